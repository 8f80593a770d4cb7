"""A cloud provider whose stack a refused promotion must never reach: its outputs name a
model store and a version in service, and changing its config or running an update fails
the test."""

from __future__ import annotations


class UntouchedProvider:
    """A cloud provider (AWS by name) whose stack the promotion must never change."""

    name = "aws"

    def __init__(self, store: str):
        self.store = store

    def supports(self, operation):
        pass

    def _engine(self, ctx, operation):
        store = self.store

        class Engine:
            def outputs(self):
                return {"model_store_uri": store, "model_version": "v1"}

            def set_config(self, values):
                raise AssertionError(f"the stack's config was changed: {values}")

            def up(self):
                raise AssertionError("an update ran")

        return Engine()
