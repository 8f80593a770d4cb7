"""A bake that passed says how much traffic it judged: `baked_requests` beside
`baked_seconds`, from the provider's `requests_served` over the bake; no request is a
warning (no alert could fire), an unknown count a note; neither fails the bake."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from llmcloud.providers import bake as bake_module
from llmcloud.providers import rollout
from tests.pipeline.test_promote_bake import (  # noqa: F401 - in_store: an autouse fixture
    AlertingProvider,
    Clock,
    _ctx,
    _timed,
    in_store,
)


class Counting(AlertingProvider):
    """A cloud whose alerts never fire and whose metrics count `served` (an exception:
    the read raises, despite the contract)."""

    def __init__(self, served) -> None:
        super().__init__({})
        self.served, self.asked_for = served, []

    def requests_served(self, ctx, outputs, since, until):
        self.asked_for.append((since, until))
        if isinstance(self.served, BaseException):
            raise self.served
        return self.served


def _bake(provider, tmp_path: Path, heard: list):
    clock = Clock()
    token = bake_module.bake_progress.set(lambda event, message: heard.append((event, message)))
    try:
        with _timed(clock):
            return rollout.promote(provider, _ctx(tmp_path), "v2", bake=600)
    finally:
        bake_module.bake_progress.reset(token)


def test_the_requests_of_the_bake_are_in_the_result(tmp_path: Path, capsys) -> None:
    provider, heard = Counting(1234), []
    result = _bake(provider, tmp_path, heard)
    assert (result["baked_seconds"], result["baked_requests"]) == (600, 1234)
    # asked once, over the bake's own 600 s
    [(since, until)] = provider.asked_for
    assert until - since == timedelta(seconds=600) and since.tzinfo is not None
    assert heard[-1] == ("passed", "baked 600 s: no alert fired over 1234 requests")
    assert "warning" not in capsys.readouterr().err


def test_a_bake_without_traffic_passes_with_a_warning(tmp_path: Path, capsys) -> None:
    heard: list = []
    result = _bake(Counting(0), tmp_path, heard)
    assert (result["outcome"], result["baked_requests"]) == ("promoted", 0)
    err = capsys.readouterr().err
    assert f"warning: {bake_module.BAKED_NO_TRAFFIC}" in err
    assert "no alert could have fired" in bake_module.BAKED_NO_TRAFFIC
    assert heard[-1] == ("passed",
                         f"baked 600 s: no alert fired, but {bake_module.BAKED_NO_TRAFFIC}")


def test_a_count_that_cannot_be_read_is_null_with_a_note(tmp_path: Path, capsys) -> None:
    for provider in (Counting(None), Counting(RuntimeError("throttled")), AlertingProvider({})):
        heard: list = []
        result = _bake(provider, tmp_path / str(id(provider)), heard)
        assert (result["outcome"], result["baked_requests"]) == ("promoted", None)
        assert f"note: {bake_module.BAKED_UNCOUNTED}" in capsys.readouterr().err
        assert heard[-1] == ("passed",
                             f"baked 600 s: no alert fired; {bake_module.BAKED_UNCOUNTED}")

