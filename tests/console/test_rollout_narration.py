"""The console's narration of a rollout when the gateway takes a replica out and back: a
bad version's replica answers each request with a 503 (an engine error), the gateway marks
it not ready until its next health check, and the watcher saw it "ready" again each time
(found on a real local stack: "replica r17 ready on v3" twenty times in a 35 s bake)."""

from __future__ import annotations

from llmcloud.console.rollouts import Rollout, Rollouts, narrate


def test_a_replica_ready_again_after_a_blip_is_not_said_again() -> None:
    looks = iter([
        [{"id": "r1", "version": "v1", "ready": True}],
        [{"id": "r1", "version": "v1", "ready": True},
         {"id": "r2", "version": "v2", "ready": False}],
        [{"id": "r1", "version": "v1", "ready": True},
         {"id": "r2", "version": "v2", "ready": True}],
        *[[{"id": "r2", "version": "v2", "ready": ready}] for ready in [True, False, True] * 5],
        # the old version back (a bad version's bake failed), and a blip of its own
        *[[{"id": "r3", "version": "v1", "ready": ready}] for ready in [False, True, False, True]],
    ])
    rollouts = Rollouts(lambda: next(looks))
    rollout = Rollout("rollout-1", "promote", "v2", "v1", bake_seconds=70)
    for _ in range(22):
        rollouts._observe(rollout)
    assert [e["message"] for e in rollout.events] == [
        "replica r2 starting on v2", "replica r2 ready on v2", "replica r1 stopped (v1)",
        "replica r2 stopped (v2)", "replica r3 starting on v1", "replica r3 ready on v1"]


def test_narrate_still_says_a_first_ready_and_skips_only_those_seen_ready() -> None:
    before = [{"id": "r1", "version": "v1", "ready": False},
              {"id": "r2", "version": "v2", "ready": False}]
    after = [{"id": "r1", "version": "v1", "ready": True},
             {"id": "r2", "version": "v2", "ready": True}]
    assert narrate(before, after, been_ready={"r1"}) == ["replica r2 ready on v2"]
    assert narrate(before, after) == ["replica r1 ready on v1", "replica r2 ready on v2"]
