"""The GCP registry's cleanup policies bound the repository (tagged images too) and never
delete the image the stack runs: evaluated as Artifact Registry does (a version matching a
DELETE and a KEEP is kept; a Docker version's name is its digest)."""

from __future__ import annotations

from dataclasses import dataclass

from llmcloud.providers.gcp import naming
from llmcloud.providers.gcp.mocks import PROJECT
from llmcloud.providers.gcp.registry import cleanup_policies, in_service_digest
from tests.providers.gcp.helpers import declared, gcp_spec, one

REPOSITORY = "gcp:artifactregistry/repository:Repository"
DAY = 86400


@dataclass(frozen=True)
class Version:
    digest: str
    age_days: int
    tagged: bool = True


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def matches(condition: dict, version: Version) -> bool:
    state = condition.get("tag_state", condition.get("tagState", "ANY"))
    if state != "ANY" and (state == "TAGGED") != version.tagged:
        return False
    older = condition.get("older_than", condition.get("olderThan"))
    if older is not None and version.age_days * DAY <= int(older.rstrip("s")):
        return False
    prefixes = condition.get("version_name_prefixes", condition.get("versionNamePrefixes"))
    return prefixes is None or any(version.digest.startswith(p) for p in prefixes)


def deleted(policies: list[dict], versions: list[Version]) -> set[str]:
    """What a cleanup run deletes: versions some DELETE matches and no KEEP does."""
    newest = sorted(versions, key=lambda v: v.age_days)
    kept: set[str] = set()
    doomed: set[str] = set()
    for policy in policies:
        recent = policy.get("most_recent_versions") or policy.get("mostRecentVersions")
        if recent:
            count = recent.get("keep_count", recent.get("keepCount"))
            kept |= {v.digest for v in newest[:count]}
            continue
        hit = {v.digest for v in versions if matches(policy["condition"], v)}
        (kept if policy["action"] == "KEEP" else doomed).update(hit)
    return doomed - kept


def ci_history(in_service_age: int) -> list[Version]:
    """A busy CI: a tagged push a day for 120 days, the stack still running an old one."""
    return [Version(digest(day), day) for day in range(120)] + [
        Version(digest(1000), in_service_age)]


def test_tagged_images_are_bounded_but_the_one_in_service_is_kept():
    versions = ci_history(in_service_age=100)
    gone = deleted(cleanup_policies(in_service=digest(1000)), versions)
    assert digest(1000) not in gone
    # the newest ten stay whatever their age (rollbacks); past 30 days the rest go
    assert {digest(day) for day in range(10)}.isdisjoint(gone)
    assert {digest(day) for day in range(31, 120)} <= gone


def test_untagged_images_still_go_after_14_days():
    versions = [Version(digest(day), day, tagged=day % 2 == 0) for day in range(40)]
    gone = deleted(cleanup_policies(keep_recent=0), versions)
    assert digest(15) in gone and digest(16) not in gone and digest(32) in gone


def test_policies_fit_artifact_registrys_limit():
    assert len(cleanup_policies(in_service=digest(1))) <= 10


def test_the_digest_is_protected_only_when_the_image_is_in_this_repository():
    own = f"us-central1-docker.pkg.dev/p/repo/server@{digest(7)}"
    assert in_service_digest(own, "us-central1", "repo") == digest(7)
    assert in_service_digest(f"us-central1-docker.pkg.dev/example.com/p/repo/a/b@{digest(7)}",
                             "us-central1", "repo") == digest(7)
    for elsewhere in (f"us-central1-docker.pkg.dev/p/other/server@{digest(7)}",
                      f"europe-west4-docker.pkg.dev/p/repo/server@{digest(7)}",
                      f"ghcr.io/p/repo/server@{digest(7)}", None):
        assert in_service_digest(elsewhere, "us-central1", "repo") is None


def test_the_stack_keeps_the_image_its_servers_run():
    spec = gcp_spec()
    repo = naming.repository_id("dev", spec.model.name or "model")
    image = f"us-central1-docker.pkg.dev/{PROJECT}/{repo}/server@{digest(42)}"
    resources, _ = declared(image=image)
    policies = one(resources, REPOSITORY).inputs["cleanupPolicies"]
    keep = [p for p in policies if p["action"] == "KEEP" and "condition" in p]
    assert keep == [{"id": "keep-in-service", "action": "KEEP",
                     "condition": {"tagState": "ANY", "versionNamePrefixes": [digest(42)]}}]
    assert digest(42) not in deleted(policies, [Version(digest(42), 365)]
                                     + [Version(digest(n), n) for n in range(20)])


def test_a_stack_without_an_image_of_its_own_protects_nothing_but_the_newest():
    for sections in ({}, {"image": f"europe-west4-docker.pkg.dev/x/r/server@{digest(1)}"}):
        resources, _ = declared(**sections)
        policies = one(resources, REPOSITORY).inputs["cleanupPolicies"]
        assert [p["id"] for p in policies] == ["delete-untagged", "delete-old", "keep-recent"]
