"""The bake after a rollout: the stack's own alerts watched for a while, and, asked for
`min_requests`, the requests the new version answered meanwhile counted.

A cloud's promote or rollback (`rollout`) bakes after the cloud reports the roll done; the
local provider bakes through `bake` too (`local.bake`). A bake that fails raises
`BakeFailed`, and its caller puts the previous version back.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from llmcloud.stacks.errors import ConfigError, DeploymentError, LlmcloudError

#: how often a bake asks the cloud which of the stack's alerts fire
BAKE_POLL_SECONDS = 30.0
#: how long a bake asked for `min_requests` reads the count again, when its end found too
#: few: a cloud's request metrics arrive after the requests (the ALB sends its metrics every
#: 60 s; Google makes a load balancer's minute visible up to 210 s after it; Azure publishes
#: no figure, "a few minutes"), so the count read at the bake's end is a lower bound that
#: keeps rising for minutes. The alerts are still watched meanwhile, and the bake passes as
#: soon as the count is reached: the wait only costs a version that is short of traffic
MIN_REQUESTS_GRACE_SECONDS = 300.0
#: who hears of a bake's progress (`bake`'s "started", "counting", "passed", "failed"): set
#: by a caller that runs a provider's whole promote or rollback (the console, in its
#: rollout's thread), since the provider calls `bake` itself
bake_progress: ContextVar[Callable[[str, str], None] | None] = ContextVar(
    "bake_progress", default=None)


#: what a bake that passed without a request says (stderr, its progress report); a provider
#: that counts requests otherwise says it its own way (its `baked_no_traffic`)
BAKED_NO_TRAFFIC = ("the bake saw no requests (in the stack's metrics, which lag a minute "
                    "or more), so no alert could have fired: the new version is unproven "
                    "under traffic (send it traffic during the bake, or bake longer)")
#: and one whose count of requests could not be read
BAKED_UNCOUNTED = ("how many requests the bake saw could not be read: whether the new "
                   "version was proven under traffic is unknown")


class BakeFailed(DeploymentError):
    """The bake saw one of the stack's alerts begin to fire, could read none of them, or
    counted fewer requests than it was asked to prove the version under."""


def check_min_requests(bake_seconds: int, min_requests: int) -> None:
    """Refuse `min_requests` without a bake (`ConfigError`, exit 2), before anything runs:
    only a bake counts the requests the new version answered."""
    if min_requests and not bake_seconds:
        raise ConfigError(
            "--min-requests needs --bake",
            context="the requests are counted during the bake that follows the rollout",
            hint=f"add --bake SECONDS, or drop --min-requests {min_requests}")


def alerts_before(provider: Any, ctx: Any, outputs: Mapping[str, Any]) -> dict[str, str]:
    """The stack's alerts firing before the update (a bake's baseline); when they cannot be
    read the promotion is refused, nothing deployed: a bake that cannot tell the new
    version's alerts from the old's would judge it on nothing."""
    try:
        firing = provider.firing_alerts(ctx, outputs)
    except LlmcloudError as exc:
        if not isinstance(exc, DeploymentError):
            raise  # the stack names no alerts, the cloud has no read, no credentials
        refused: Exception = exc
    except Exception as exc:  # noqa: BLE001 - the cloud's SDK, refusing
        refused = exc
    else:
        for name, description in sorted(firing.items()):
            print(f"note: alert {name} ({description}) fires already, before the update: "
                  "the bake does not count it", file=sys.stderr)
        return firing
    raise DeploymentError(
        f"promote refused: the alerts of stack '{ctx.stack}' could not be read before the "
        "update (--bake needs them); nothing was deployed",
        context=_described(refused),
        hint=getattr(refused, "hint", None) or "check that your cloud credentials may read "
                                               "the stack's alerts",
    )


def bake(provider: Any, ctx: Any, outputs: Mapping[str, Any], baseline: Mapping[str, str],
         seconds: float, *, min_requests: int = 0, grace: float = MIN_REQUESTS_GRACE_SECONDS,
         interval: float = BAKE_POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> int | None:
    """Watch the stack's alerts (`provider.firing_alerts`) every `interval` s for `seconds`
    after a rollout; return how many requests the stack answered meanwhile
    (`provider.requests_served`; None: it cannot tell). Raise `BakeFailed` when an alert
    not in `baseline` (those firing before the update) fires, or when no read succeeded at
    all: a bake that saw nothing must not pass. A read that fails is retried at the next
    poll. Without `min_requests`, a bake without traffic still passes (a staging stack at
    night must promote), with a warning: no alert could fire. With it, fewer requests
    than `min_requests`, or a count that cannot be read, fail the bake: the count of the
    bake's own window is read again every `interval` s for up to `grace` s (a cloud's
    metrics arrive late; 0 for a provider that counts as it answers), the alerts still
    watched, and the bake passes as soon as it is reached. Each read says how far the bake
    is on stderr. `bake_progress`'s listener, when one is set, hears "started", then
    "counting" when the count is awaited past the bake's end, then "passed" or "failed",
    each with its sentence."""
    return Bake(provider, ctx, outputs, baseline, seconds, min_requests=min_requests,
                grace=grace, interval=interval, clock=clock, sleep=sleep,
                report=_heard(bake_progress.get())).run()


@dataclass
class Bake:
    """One bake of a stack after its rollout (see `bake`): what it watches, for how long,
    on what clock, and who hears of it (`report`, which never fails it)."""

    provider: Any
    ctx: Any
    outputs: Mapping[str, Any]
    #: the alerts firing before the update, which the bake does not count
    baseline: Mapping[str, str]
    seconds: float
    min_requests: int = 0
    grace: float = MIN_REQUESTS_GRACE_SECONDS
    interval: float = BAKE_POLL_SECONDS
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    report: Callable[[str, str], None] = lambda event, message: None

    def run(self) -> int | None:
        """Bake, as `bake` says: the requests served meanwhile, or `BakeFailed`."""
        seconds, interval, clock = self.seconds, self.interval, self.clock
        started = f"baking: watching the stack's alerts for {seconds:.0f} s"
        print(started, file=sys.stderr)
        self.report("started", started)
        since = datetime.now(timezone.utc)
        start = clock()
        deadline = start + seconds
        reads, last_failure = 0, ""
        while (now := clock()) < deadline:
            self.sleep(min(interval, deadline - now))
            try:
                elapsed = clock() - start
                self.watch_alerts(functools.partial(_say_progress, elapsed, seconds),
                                  f"{elapsed:.0f} s into its {seconds:.0f} s")
            except BakeFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - retried at the next poll
                last_failure = _described(exc)
                left = deadline - clock()
                _say_progress(clock() - start, seconds, f"the alerts could not be read "
                              f"({last_failure}); "
                              + (f"retrying in {min(interval, left):.0f} s" if left > 0
                                 else "no time is left to retry"))
                continue
            reads += 1
        if reads == 0:
            raise self.failed(BakeFailed(
                f"the bake could not read the stack's alerts in {seconds:.0f} s",
                context=f"last failure: {last_failure or 'no read was made'}"))
        # (`clock`'s time: the bake's own, which tests make up)
        until = since + timedelta(seconds=clock() - start)
        served = requests_served(self.provider, self.ctx, self.outputs, since, until)
        if self.min_requests:
            # a provider that never counts: no wait makes it
            counts = callable(getattr(self.provider, "requests_served", None))
            served = self.await_requests((since, until), served,
                                         self.grace if counts else 0)
        self.say_passed(served)
        return served

    def watch_alerts(self, say: Callable[[str], None], when: str) -> None:
        """One read of the bake's alerts: `say` it, and raise `BakeFailed` for an alert not
        in `baseline`, fired `when`; the read's own failure is the caller's to retry."""
        firing = self.provider.firing_alerts(self.ctx, self.outputs)
        new = {name: text for name, text in firing.items() if name not in self.baseline}
        say(f"{'alert' if len(new) == 1 else 'alerts'} {', '.join(sorted(new))} fired"
            if new else "no new alert firing" if firing else "no alert firing")
        if new:
            raise self.failed(BakeFailed(
                f"{'an alert' if len(new) == 1 else 'alerts'} fired during the bake, {when}",
                context="; ".join(f"{name}: {new[name]}" for name in sorted(new))))

    def await_requests(self, window: tuple[datetime, datetime], served: int | None,
                       grace: float) -> int | None:
        """`served` once it reaches `min_requests`, reading the count of the bake's `window`
        again every `interval` s for up to `grace` s (the alerts watched too, an alert firing
        still fails); `BakeFailed` when it never does, or could not be read."""
        seconds, interval, clock, min_requests = (self.seconds, self.interval, self.clock,
                                                  self.min_requests)
        start = clock()
        end = start + grace
        told = False
        while served is None or served < min_requests:
            left = end - clock()
            if left <= 0:
                raise self.failed(_too_few(served, min_requests, seconds, grace))
            if not told:  # (once: the console shows the wait, its bar at its end)
                told = True
                self.report("counting", f"baked {seconds:.0f} s: no alert fired; "
                            + _counted(served, min_requests) + f", reading the count again "
                            f"for up to {grace:.0f} s (the stack's metrics arrive late)")
            _say_count(served, min_requests, f"reading it again in {min(interval, left):.0f} "
                       f"s ({left:.0f} s left: the stack's metrics arrive late)")
            self.sleep(min(interval, left))
            try:
                # (said once a poll, with the count: an alert that fires fails the bake)
                self.watch_alerts(lambda what: None,
                                  f"{clock() - start:.0f} s after its {seconds:.0f} s, while "
                                  "its count of requests was awaited")
            except BakeFailed:
                raise
            except Exception as exc:  # noqa: BLE001 - the count is what is awaited now
                _say_count(served, min_requests, f"the alerts could not be read "
                           f"({_described(exc)})")
            served = requests_served(self.provider, self.ctx, self.outputs, *window)
        return served

    def say_passed(self, served: int | None) -> None:
        """Say that the bake passed, over `served` requests: stderr warns when it proved
        nothing, and `report` hears "passed"."""
        passed = f"baked {self.seconds:.0f} s: no alert fired"
        if served is None:
            said = f"note: {BAKED_UNCOUNTED}"
            passed += f"; {BAKED_UNCOUNTED}"
        elif served == 0:
            no_traffic = getattr(self.provider, "baked_no_traffic", BAKED_NO_TRAFFIC)
            said = f"warning: {no_traffic}"
            passed += f", but {no_traffic}"
        else:
            said = ""
            passed += f" over {served} request{'s' if served != 1 else ''}"
            if self.min_requests:
                passed += f" (--min-requests {self.min_requests})"
        if said:
            print(said, file=sys.stderr)
        self.report("passed", passed)

    def failed(self, failure: BakeFailed) -> BakeFailed:
        """`failure`, once `report` heard "failed"."""
        self.report("failed", f"the bake failed: {_described(failure)}")
        return failure


def requests_served(provider: Any, ctx: Any, outputs: Mapping[str, Any], since: datetime,
                    until: datetime) -> int | None:
    """How many requests the stack answered between `since` and `until`, as the cloud's
    metrics of its edge hold them now (`provider.requests_served`, a lower bound: metrics
    arrive minutes late); None for a provider that cannot tell, or one that raises."""
    read = getattr(provider, "requests_served", None)
    if not callable(read):
        return None
    try:
        served = read(ctx, outputs, since, until)
    except Exception:  # noqa: BLE001 - the count only informs: the bake passed
        return None
    return served if isinstance(served, int) and not isinstance(served, bool) else None


def _say_count(served: int | None, min_requests: int, what: str) -> None:
    print(f"  baking: {_counted(served, min_requests)}; {what}", file=sys.stderr, flush=True)


def _counted(served: int | None, min_requests: int) -> str:
    return "the count could not be read" if served is None else \
        f"{served} of the {min_requests} requests asked for counted"


def _too_few(served: int | None, min_requests: int, seconds: float,
             grace: float) -> BakeFailed:
    waited = f" and {grace:.0f} s more for the stack's metrics" if grace else ""
    if served is None:
        message = (f"the bake could not count its requests, so --min-requests {min_requests} "
                   "could not be proven")
        context = (f"{BAKED_UNCOUNTED} (after the bake's {seconds:.0f} s{waited})")
    else:
        message = (f"the bake counted {served} request{'s' if served != 1 else ''}, fewer "
                   f"than the {min_requests} --min-requests asks for")
        context = (f"counted over the bake's {seconds:.0f} s{waited}: the new version is "
                   "unproven under traffic")
    return BakeFailed(message, context=context,
                      hint="send the new version traffic during the bake, bake longer "
                           "(--bake), or lower --min-requests")


def _say_progress(elapsed: float, seconds: float, what: str) -> None:
    """One line on stderr after each read of a bake, so that a CI log shows it alive (not
    to `bake_progress`: the console shows a bake's progress its own way)."""
    print(f"  baking: {min(elapsed, seconds):.0f} of {seconds:.0f} s, {what}", file=sys.stderr,
          flush=True)


def _heard(listener: Callable[[str, str], None] | None) -> Callable[[str, str], None]:
    """`listener`, called so that it can never fail the bake it hears (a page that shows
    the bake is no reason to put the previous version back)."""
    def report(event: str, message: str) -> None:
        if listener is None:
            return
        try:
            listener(event, message)
        except Exception as exc:  # noqa: BLE001 - said, and the bake goes on
            print(f"note: the bake's progress could not be reported: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
    return report


def _described(exc: BaseException) -> str:
    if isinstance(exc, LlmcloudError):
        return exc.message + (f": {exc.context}" if exc.context else "")
    return f"{type(exc).__name__}: {exc}"
