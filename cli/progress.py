"""Engine events -> a live view of resources (name, type, operation, state, elapsed) on stderr.

On a terminal it is a rich table that updates in place; elsewhere (CI logs) one line per
resource when its step finishes. Either way stdout stays free for `--json`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

_IDLE_OPS = {"same", "read"}


@dataclass
class ResourceStep:
    """One resource's step in an update."""

    name: str
    type: str
    op: str
    state: str = "running"
    started: float = 0.0
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        return (self.ended or now) - self.started


class EngineProgress:
    """Call it with each `pulumi.automation.EngineEvent`; use it as a context manager."""

    def __init__(
        self, stream: TextIO | None = None, live: bool | None = None, clock=time.monotonic
    ):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.clock = clock
        self.steps: dict[str, ResourceStep] = {}
        self.errors: list[str] = []
        self._live: Any = None

    def __enter__(self) -> EngineProgress:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream)
            self._live = Live(self.render(), console=console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            self._live = None

    def __call__(self, event: Any) -> None:
        now = self.clock()
        if event.resource_pre_event is not None:
            meta = event.resource_pre_event.metadata
            op = _op(meta.op)
            if op in _IDLE_OPS or meta.type.startswith("pulumi:pulumi:Stack"):
                return
            self.steps[meta.urn] = ResourceStep(
                name=meta.urn.rsplit("::", 1)[-1], type=meta.type, op=op, started=now
            )
        elif event.res_outputs_event is not None:
            self._finish(event.res_outputs_event.metadata.urn, "done", now)
        elif event.res_op_failed_event is not None:
            self._finish(event.res_op_failed_event.metadata.urn, "failed", now)
        elif event.diagnostic_event is not None:
            diag = event.diagnostic_event
            if diag.severity == "error":
                self.errors.append(diag.message.strip())
        else:
            return
        if self._live is not None:
            self._live.update(self.render())

    def _finish(self, urn: str, state: str, now: float) -> None:
        step = self.steps.get(urn)
        if step is None or step.ended is not None:
            return
        step.state, step.ended = state, now
        if not self.live:
            print(
                f"  {step.op:<8} {step.type:<48} {step.name:<32} {state} "
                f"({step.elapsed(now):.1f}s)",
                file=self.stream,
                flush=True,
            )

    def render(self):
        """The current table (a rich renderable)."""
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column in ("resource", "type", "operation", "state", "elapsed"):
            table.add_column(column, justify="right" if column == "elapsed" else "left")
        now = self.clock()
        for step in self.steps.values():
            color = {"done": "green", "failed": "red"}.get(step.state, "yellow")
            table.add_row(
                step.name,
                step.type,
                step.op,
                f"[{color}]{step.state}[/{color}]",
                f"{step.elapsed(now):.1f}s",
            )
        return table

    def summary(self) -> dict[str, int]:
        """How many resources each operation touched."""
        counts: dict[str, int] = {}
        for step in self.steps.values():
            counts[step.op] = counts.get(step.op, 0) + 1
        return counts


def _op(op: Any) -> str:
    return str(getattr(op, "value", op)).lower()
