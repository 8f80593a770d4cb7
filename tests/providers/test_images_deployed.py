"""The images a stack's updates deployed, read from `pulumi stack history`: what Azure's
registry prune keeps for rollbacks (`image push`)."""

from __future__ import annotations

from types import SimpleNamespace

from llmcloud.providers.cloud import _Engine


def _entry(image: str | None, *, kind: str = "update", result: str = "succeeded"):
    config = {"llmcloud:image": SimpleNamespace(value=image, secret=False)} if image else {}
    return SimpleNamespace(kind=kind, result=result, config=config)


class _History:
    def __init__(self, entries):
        self.entries, self.asked = entries, []

    def history(self, page_size=None, page=None, show_secrets=True):
        self.asked.append({"page_size": page_size, "show_secrets": show_secrets})
        return self.entries


def test_only_succeeded_updates_count_and_no_secret_is_decrypted():
    engine = object.__new__(_Engine)
    engine._stack = _History([_entry("r@sha256:a"), _entry("r@sha256:b", result="failed"),
                              _entry("r@sha256:c", kind="refresh"), _entry(None),
                              _entry("r@sha256:d")])
    assert engine.images_deployed(updates=7) == {"r@sha256:a", "r@sha256:d"}
    # (the image is not a secret; showing secrets would need the stack's passphrase)
    assert engine._stack.asked == [{"page_size": 7, "show_secrets": False}]


def test_the_prune_keeps_the_image_of_every_update_whatever_its_result():
    # a failed update may have rolled its image out before it stopped, a running one is
    engine = object.__new__(_Engine)
    engine._stack = _History([_entry("r@sha256:a"), _entry("r@sha256:b", result="failed"),
                              _entry("r@sha256:c", result="in-progress"),
                              _entry("r@sha256:d", kind="refresh")])
    assert engine.images_tried(updates=7) == {"r@sha256:a", "r@sha256:b", "r@sha256:c"}
    assert engine._stack.asked == [{"page_size": 7, "show_secrets": False}]
