"""`image push` bounds the Azure stack's registry: ACR keeps tagged images for ever (its
retention policy takes untagged ones only), so after a push the repository's tagged images
older than 30 days go, but never the newest 10, one the stack serves or deployed, a locked
one or the one just pushed; and nothing goes when the listing cannot be read in full."""

from __future__ import annotations

import pytest

from llmcloud.providers.azure.image_prune import (
    PruneError,
    digests_of,
    list_manifests,
    prune_repository,
)
from tests.providers.azure.acr_fake import HOST, NOW, REPOSITORY, FakeAcr, digest, manifest


def history(count: int = 15) -> list[dict]:
    """A CI's pushes, one every 5 days: ages 1, 6, 11, ... 71 days (`n` = its order)."""
    return [manifest(n, age_days=5 * n + 1) for n in range(count)]


def prune(acr: FakeAcr, keep: set[str]) -> dict:
    with acr.client() as client:
        return prune_repository(client, HOST, REPOSITORY, "refresh-1", keep, now=NOW)


def test_the_newest_ten_and_the_image_in_service_stay_older_ones_go():
    acr = FakeAcr([*history(), manifest(100, age_days=90, tags=[]),
                   manifest(101, age_days=95, delete_enabled=False)])
    in_service = f"{HOST}/{REPOSITORY}@{digest(12)}"
    result = prune(acr, digests_of([in_service]))
    # newest 10: n 0..9 (1 to 46 days); 12 serves; the untagged one is the retention
    # policy's; the locked one stays
    gone = [digest(n) for n in (14, 13, 11, 10)]
    assert acr.deleted() == gone
    assert result["deleted"] == [f"{HOST}/{REPOSITORY}@{d}" for d in gone]
    assert result["kept"] == 12 and result["warnings"] == []


def test_the_token_asks_only_to_read_and_delete_the_pushed_repository():
    acr = FakeAcr(history(3))
    prune(acr, set())
    [(_, _, form)] = [r for r in acr.requests if r[1] == "/oauth2/token"]
    assert form == {"grant_type": "refresh_token", "service": HOST,
                    "refresh_token": "refresh-1",
                    "scope": f"repository:{REPOSITORY}:metadata_read,delete"}


def test_every_page_is_read_before_anything_is_deleted():
    # digest order mixes ages: the newest ten are spread over five pages of three
    acr = FakeAcr(history(), page_size=3)
    with acr.client() as client:
        listed = list_manifests(client, HOST, REPOSITORY, "access-1")
    assert sorted(m.digest for m in listed) == sorted(digest(n) for n in range(15))
    assert [q.get("last") for _, p, q in acr.requests if p.endswith("_manifests")] == [
        None, *(sorted(digest(n) for n in range(15))[i] for i in (2, 5, 8, 11))]
    prune(acr, set())
    assert sorted(acr.deleted()) == sorted(digest(n) for n in range(10, 15))


def test_a_page_that_cannot_be_read_deletes_nothing():
    acr = FakeAcr(history())
    acr.list_status = {3: 500}
    with pytest.raises(PruneError, match=r"listing llmcloud-server failed \(HTTP 500\)"):
        prune(acr, set())
    assert acr.deleted() == []


def test_a_next_page_on_another_host_is_not_followed():
    acr = FakeAcr(history())
    acr.link_host = "https://elsewhere.example"
    with pytest.raises(PruneError, match="another host"):
        prune(acr, set())
    assert acr.deleted() == []


def test_a_delete_that_fails_is_a_warning_and_the_others_go_on():
    acr = FakeAcr(history())
    acr.delete_status = {digest(13): 500, digest(11): 404}
    result = prune(acr, set())
    assert acr.deleted() == [digest(n) for n in (14, 13, 12, 11, 10)]
    assert result["deleted"] == [f"{HOST}/{REPOSITORY}@{digest(n)}" for n in (14, 12, 11, 10)]
    assert result["warnings"] == [f"deleting {REPOSITORY}@{digest(13)} failed (HTTP 500)"]


def test_an_identity_without_acr_delete_stops_at_the_first_refusal():
    acr = FakeAcr(history())
    acr.delete_status = {digest(14): 401}
    result = prune(acr, set())
    assert acr.deleted() == [digest(14)]
    assert result["deleted"] == []
    assert "needs AcrDelete on the registry" in result["warnings"][0]


def test_young_images_stay_whatever_their_number():
    acr = FakeAcr([manifest(n, age_days=n / 2 + 0.1) for n in range(40)])  # all under 30 days
    assert prune(acr, set())["deleted"] == []
    assert acr.deleted() == []


def test_an_index_that_lists_the_image_in_service_stays():
    # the stack serves one platform's manifest (untagged) of an old tagged index: deleting
    # the index would leave it untagged, for the retention policy to delete
    acr = FakeAcr([*history(), manifest(50, age_days=80, tags=[]),
                   manifest(51, age_days=80, references=[50])])
    result = prune(acr, digests_of([f"{HOST}/{REPOSITORY}@{digest(50)}"]))
    assert digest(51) not in acr.deleted()
    assert sorted(acr.deleted()) == sorted(digest(n) for n in range(10, 15))
    assert result["warnings"] == []


def test_a_next_page_not_on_https_is_not_followed():
    # the bearer token goes with the request: never in clear
    acr = FakeAcr(history())
    acr.link_host = f"http://{HOST}"
    with pytest.raises(PruneError, match="another host"):
        prune(acr, set())
    assert acr.deleted() == []


def test_a_throttled_delete_stops_the_prune():
    acr = FakeAcr(history())
    acr.delete_status = {digest(14): 429}
    result = prune(acr, set())
    assert acr.deleted() == [digest(14)] and result["deleted"] == []
    assert "throttled" in result["warnings"][0]


def test_digests_are_kept_in_any_algorithm_and_case_and_a_tag_refuses_the_prune():
    pinned = f"{HOST}/{REPOSITORY}@{digest(14)}"
    sha512 = f"{HOST}/{REPOSITORY}@sha512:" + "AB" * 64
    assert digests_of([pinned, sha512, None]) == {digest(14), "sha512:" + "ab" * 64}
    with pytest.raises(PruneError, match="by no digest"):
        digests_of([f"{HOST}/{REPOSITORY}:1.0.14"])
