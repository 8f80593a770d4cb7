"""The stack file (`Pulumi.<stack>.yaml`) as the console reads it: again each time it
changed on disk, not only when the console started.

The operator edits it, or runs `llmcloud promote` or `init --force` in a terminal, while the
console runs; the console then answers with the file as it is now (which version it names,
hence protects from delete; the replicas; the plan). A file that became invalid, a cloud
stack's file that is gone, or one that now names another provider is a `StackFileError`,
answered 409 until the file is fixed: the console never shows or acts on a spec the file
no longer says.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from llmcloud.providers.base import StackContext
from llmcloud.stacks.errors import ConfigError, LlmcloudError

#: what tells a changed file: its modification time, size and inode (an atomic replace)
Signature = tuple[int, int, int]


class StackFileError(ConfigError):
    """The stack file changed while the console runs and can no longer be served: invalid,
    gone (a cloud stack's), or naming another provider. The console answers 409 until the
    file is fixed; it reads it again on the next request."""


class StackFile:
    """The context of the console's stack, its spec read again from the stack file when
    the file's modification time, size or inode changed (a `stat` a request otherwise)."""

    def __init__(self, provider: str, ctx: StackContext):
        from llmcloud.stacks.config import stack_file

        self.provider, self.stack, self._start = provider, ctx.stack, ctx
        self.path: Path = stack_file(ctx.project_dir, ctx.stack)
        # the spec the console started with was read from the file as it is now
        self._seen = _signature(self.path)
        self._existed = self._seen is not None
        self._current: StackContext | LlmcloudError = ctx
        self._lock = threading.Lock()

    def context(self) -> StackContext:
        """The stack's context with its spec as the stack file says now; `StackFileError`
        while the file cannot be served."""
        with self._lock:
            seen = _signature(self.path)
            if seen != self._seen:
                self._seen, self._current = seen, self._read(seen)
                self._existed = self._existed or seen is not None
            current = self._current
        if isinstance(current, LlmcloudError):
            # a fresh error each time: one instance raised again grows its traceback
            raise StackFileError(current.message, context=current.context, hint=current.hint)
        return current

    def _read(self, seen: Signature | None) -> StackContext | LlmcloudError:
        from llmcloud.providers.registry import provider_defaults
        from llmcloud.stacks.config import read_stack_config, resolve_spec

        name, again = self.path.name, "; the console reads it again on its next request"
        if seen is None and self._existed and self.provider != "local":
            return StackFileError(
                f"{name} is gone from {self.path.parent}",
                context=f"the {self.provider} stack '{self._start.stack}' is managed from its "
                        "stack file: without it the console would show and act on the "
                        "provider's defaults",
                hint=f"put it back (from your copy or version control){again}")
        try:
            spec = resolve_spec(file_values=read_stack_config(self.path),
                                environ=self._start.environ, flags=self._start.flags,
                                defaults_for=provider_defaults, source_name=name)
        except LlmcloudError as exc:
            return StackFileError(f"{name} changed and is no longer valid: {exc.message}",
                                  context=exc.context, hint=f"{exc.hint or 'fix it'}{again}")
        if spec.provider != self.provider:
            return StackFileError(
                f"{name} now names provider '{spec.provider}'",
                context=f"this console serves stack '{self._start.stack}' on {self.provider}",
                hint=f"put `llmcloud:provider: {self.provider}` back, or restart "
                     f"`llmcloud console` to serve the {spec.provider} stack{again}")
        return dataclasses.replace(self._start, spec=spec)


def _signature(path: Path) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino
