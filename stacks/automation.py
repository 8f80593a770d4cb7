"""The one seam between llmcloud and the Pulumi engine: the Automation API on the project.

`llmcloud up` and a platform team's plain `pulumi up` run the same program, because both
run the project directory's `Pulumi.yaml`. Everything that talks to the engine goes through
`PulumiStack`, whose `open_stack` tests replace with a fake that records what it was asked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from llmcloud.stacks.config import ENV_PREFIX, NAMESPACE, flags_to_env
from llmcloud.stacks.errors import (
    BusyError,
    ConfigError,
    CredentialsError,
    DeploymentError,
    ExitCode,
    InterruptedOperation,
    LlmcloudError,
    MissingToolError,
)
from llmcloud.stacks.plain_pulumi import MARKER as RUN_BY_LLMCLOUD

PULUMI_INSTALL_HINT = "install the Pulumi CLI: curl -fsSL https://get.pulumi.com | sh"


class StackLike(Protocol):
    """What llmcloud uses of `pulumi.automation.Stack` (a fake implements the same)."""

    name: str
    workspace: Any  # its `list_stacks()` names the project's stacks in the backend

    def set_all_config(self, config: Mapping[str, Any], path: bool = False) -> None: ...
    def up(self, **kwargs: Any) -> Any: ...
    def preview(self, **kwargs: Any) -> Any: ...
    def destroy(self, **kwargs: Any) -> Any: ...
    def refresh(self, **kwargs: Any) -> Any: ...
    def outputs(self) -> Mapping[str, Any]: ...
    def info(self) -> Any: ...


def workspace_env(
    environ: Mapping[str, str], flags: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Environment for the engine: the program runs with this Python and sees the spec's
    `LLMCLOUD_*` overrides and the CLI's flags, so it resolves the spec the CLI validated,
    and llmcloud's marker, so it does not warn of the steps llmcloud takes around it."""
    env = {name: value for name, value in environ.items() if name.startswith(ENV_PREFIX)}
    env.update(flags_to_env(flags or {}))
    env[RUN_BY_LLMCLOUD] = "1"
    env["PULUMI_PYTHON_CMD"] = sys.executable
    env.setdefault("PULUMI_SKIP_UPDATE_CHECK", "true")
    return env


def open_stack(project_dir: Path, stack: str, env: Mapping[str, str],
               create: bool = False) -> StackLike:
    """Open `stack` of the Pulumi project in `project_dir`: create it when missing only if
    `create` (the operations that deploy it); else select it, and a missing stack raises
    the Automation API's `StackNotFoundError` (`PulumiStack` turns it into
    `MissingStackError`). A typo in --stack made an empty stack of that name in the user's
    backend for every command, even one that only reads a deployed stack."""
    from pulumi import automation as auto

    open_it = auto.create_or_select_stack if create else auto.select_stack
    try:
        options = auto.LocalWorkspaceOptions(work_dir=str(project_dir), env_vars=dict(env))
        return open_it(stack, work_dir=str(project_dir), opts=options)
    except FileNotFoundError as exc:
        raise MissingToolError(
            "the pulumi CLI is not installed",
            context=f"llmcloud runs cloud stacks through the Pulumi engine ({exc.strerror})",
            hint=PULUMI_INSTALL_HINT,
        ) from None
    except auto.errors.InvalidVersionError as exc:
        # an old CLI (or one whose `pulumi version` is not a version) is not llmcloud's bug
        raise MissingToolError(
            "the pulumi CLI on PATH is not one the Automation API can drive",
            context=str(exc),
            hint=f"update the Pulumi CLI: {PULUMI_INSTALL_HINT.split(': ', 1)[1]}",
        ) from None


#: what `PulumiStack` calls to open a stack: `open_stack`, or a test's fake
StackOpener = Callable[[Path, str, Mapping[str, str], bool], StackLike]


class MissingStackError(ConfigError):
    """The stack does not exist in the backend, and the operation does not create one."""

    def __init__(self, stack: str, environ: Mapping[str, str] | None = None):
        backend = _backend_url(environ or {})
        where = (f"the backend is {backend} (PULUMI_BACKEND_URL)" if backend else
                 "the backend is the one `pulumi login` chose (pulumi whoami --verbose)")
        super().__init__(
            f"stack '{stack}' does not exist in this project's Pulumi backend",
            context=f"{where}; a stack is created by its first llmcloud up, never by a "
                    "command that reads or changes a deployed one",
            hint=f"llmcloud up --stack {stack} creates it; or check --stack (pulumi stack "
                 "ls lists this project's stacks)")
        self.stack = stack


def _backend_url(environ: Mapping[str, str]) -> str | None:
    """PULUMI_BACKEND_URL without a user or password (a postgres:// backend's URL can
    carry them)."""
    url = environ.get("PULUMI_BACKEND_URL", "").strip()
    return re.sub(r"//[^/@]*@", "//", url) or None


#: how each cloud's Pulumi provider says its credentials are missing, invalid or expired
_CREDENTIALS_REFUSED = (
    "no credentials",
    # AWS (pulumi-aws: "has a problem: No valid credential sources found", "Invalid
    # credentials configured"; STS and SSO on expired or revoked keys)
    "no valid credential sources", "invalid credentials configured", "expiredtoken",
    "security token included in the request is expired", "invalidclienttokenid",
    "token has expired and refresh failed",
    # Google Cloud (application default credentials missing, or needing a new login)
    "could not find default credentials", "invalid_grant", "reauthentication is needed",
    # Azure (no `az login`; a refresh token expired or revoked)
    "please run 'az login'", "aadsts700082", "aadsts70043",
)


#: how the clouds (and pulumi-azure-native, which checks before it creates) say a name the
#: stack asked for is someone else's
_NAME_TAKEN = (
    # Google Cloud: "Error 409: The resource '...' already exists, alreadyExists"
    "alreadyexists",
    # AWS: IAM `EntityAlreadyExists`, CloudWatch Logs `ResourceAlreadyExistsException`,
    # Lambda "Function already exist", S3 `BucketAlreadyExists`
    "entityalreadyexists", "resourcealreadyexistsexception", "function already exist",
    "bucketalreadyexists",
    # Azure: pulumi-azure-native's "cannot create already existing resource (or subresource)
    # '/subscriptions/...'" (it asks before it creates)
    "cannot create already existing",
)


#: how each cloud says an account's quota cannot hold the servers: (signs, hint)
_OUT_OF_QUOTA = (
    # AWS, as the ASG's failed scaling activity that pulumi-aws reports (its group waits
    # for capacity and fails on such an activity): "VcpuLimitExceeded", "You have requested
    # more vCPU capacity than your current vCPU limit of 0 allows ..."
    (("vcpulimitexceeded", "than your current vcpu limit", "max spot instance count exceeded"),
     "AWS Service Quotas console > Amazon EC2: 'Running On-Demand G and VT instances' "
     "(L-DB2E81BA), 'Running On-Demand P instances' (L-417A185B), or their Spot quotas "
     "(L-3819A6DF, L-7212CCBC); or: aws service-quotas request-service-quota-increase "
     "--service-code ec2 --quota-code CODE --desired-value VCPUS --region REGION"),
    # Google Cloud: "Quota 'NVIDIA_L4_GPUS' exceeded. Limit: 0.0 in region us-central1.",
    # "Quota 'GPUS_ALL_REGIONS' exceeded. Limit: 0.0 globally." (QUOTA_EXCEEDED)
    (("quota_exceeded", "quota 'gpus_all_regions' exceeded", "_gpus' exceeded"),
     "Google Cloud console > IAM & Admin > Quotas: the GPU quota the error names "
     "(NVIDIA_*_GPUS in the region, and GPUS_ALL_REGIONS); gcloud compute regions describe "
     "REGION shows the region's limits"),
    # Azure: "Operation could not be completed as it results in exceeding approved
    # standardNCADSA10v4Family Cores quota ... Current Limit: 0"
    (("exceeding approved", "quotaexceeded"),
     "Azure portal > Quotas > Compute: the VM family the error names, in the stack's "
     "region; az vm list-usage --location REGION shows the limits"),
)
#: how each cloud says a zone or region has no such servers free right now
_NO_CAPACITY = (
    # AWS: InsufficientInstanceCapacity ("We currently do not have sufficient g6.xlarge
    # capacity in the Availability Zone you requested")
    "insufficientinstancecapacity", "capacity in the availability zone",
    # Google Cloud: ZONE_RESOURCE_POOL_EXHAUSTED(_WITH_DETAILS), "state:STOCKOUT"
    "zone_resource_pool_exhausted", "stockout",
    # Azure: AllocationFailed, ZonalAllocationFailed, OverconstrainedAllocationRequest,
    # SkuNotAvailable
    "allocationfailed", "overconstrainedallocationrequest", "skunotavailable",
)


def short_of_gpus(lower: str) -> tuple[str, str, str] | None:
    """(message, hint, the sign found) when a cloud's error (lowercased) says it has no GPU
    servers for the stack: the account's quota (the message begins "a quota"), or the
    zone's capacity; else None. The message has a `{stack}` field to format."""
    for signs, where in _OUT_OF_QUOTA:
        found = next((sign for sign in signs if sign in lower), None)
        if found:
            return ("a quota of the cloud account is too low for stack '{stack}' (the error "
                    "names it: GPUs or their vCPUs, most often)",
                    f"ask for a quota increase ({where}), wait for the approval, then run "
                    "llmcloud up again; or pick a region or instance type with quota", found)
    found = next((sign for sign in _NO_CAPACITY if sign in lower), None)
    if found:
        return ("the cloud has no capacity for the servers of stack '{stack}' right now",
                "the zone or region is out of this GPU type for now (not your quota): run "
                "llmcloud up again later, or set another region or compute.instance_type", found)
    return None


def _around(line: str, sign: str) -> str:
    """The cloud's words around `sign` (its limit, the quota or zone it names), not the
    line's first 400 characters: the provider's own prefix ("creating Auto Scaling Group
    ...: waiting for ... capacity satisfied: scaling activity ...") takes most of them."""
    start = max(0, line.lower().index(sign) - 150)
    return ("..." if start else "") + line[start:start + 400]


#: a bucket or file backend's lock, as the pulumi CLI names it: "<backend>/.pulumi/locks/
#: organization/<project>/<stack>/<id>.json: created by root@ip-10-0-42-235 (pid 478) at
#: 2024-05-16T20:31:35Z"
_LOCK_HOLDER = re.compile(r"created by (\S+) \(pid (\d+)\) at (\S+)")


def _lock_holder(text: str) -> str:
    """"; taken by USER@HOST (pid N) at TIME" from a bucket or file backend's refusal (the
    Pulumi Cloud's 409 names no holder); "" when it names none."""
    found = _LOCK_HOLDER.search(text)
    if not found:
        return ""
    who, pid, when = found.groups()
    return f"; taken by {who} (pid {pid}) at {when}"


def translate_command_error(exc: Exception, stack: str,
                            cloud_login: str | None = None) -> LlmcloudError:
    """Turn an Automation API error into one a user can act on. `cloud_login`: the command
    that renews the cloud's credentials (`aws configure`), for the hint."""
    from pulumi import automation as auto

    text = str(exc)
    if isinstance(exc, auto.errors.StackNotFoundError):
        return MissingStackError(stack)
    if isinstance(exc, auto.ConcurrentUpdateError):
        # the CLI refuses before the update begins: nothing changed, a later run may pass
        return BusyError(
            f"another update of stack '{stack}' is in progress",
            context="Pulumi holds a lock on the stack while an update runs" + _lock_holder(text),
            hint=f"wait for it, or if it died: pulumi cancel --stack {stack} --yes",
        )
    if any("error" in line and "pending operation" in line for line in text.lower().splitlines()):
        # (not the warning an `up` gives as it goes on despite pending operations, "...
        # interrupted while creating": that update failed for its own reason, named below)
        return DeploymentError(
            f"stack '{stack}' has pending operations from an interrupted update",
            context="resources may exist that Pulumi has not recorded",
            hint=f"llmcloud refresh --stack {stack}",
        )
    lower = text.lower()
    if "incorrect passphrase" in lower or "passphrase must be set" in lower:
        return CredentialsError(
            f"the passphrase of stack '{stack}' is missing or wrong",
            context=_last_error_line(text),
            hint="export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) as set "
                 "when the stack was made",
        )
    if "must be set for login during non-interactive" in lower:
        return CredentialsError(
            "not logged in to a Pulumi backend",
            context=_last_error_line(text),
            hint="pulumi login (or set PULUMI_ACCESS_TOKEN, or PULUMI_BACKEND_URL for a "
                 "bucket or file:// backend)",
        )
    plugin = re.search(r"install the plugin using `(pulumi plugin install [^`]+)`", text)
    if plugin or "no resource plugin" in lower:
        return MissingToolError(
            "a Pulumi provider plugin the stack needs is not installed",
            context=_last_error_line(text),
            hint=plugin.group(1) if plugin else "pulumi plugin install resource <name> "
                                                "<version> (the error names both)",
        )
    if "bucketnotempty" in lower or "containing objects without `force_destroy`" in lower:
        # the stores are not force-destroyed: model versions (and access logs) are the
        # user's to delete, not a side effect of destroy
        return DeploymentError(
            f"destroy of stack '{stack}' stopped at a bucket that still holds objects",
            context=_last_error_line(text),
            hint="llmcloud keeps model versions and logs unless you delete them: empty the "
                 "bucket the error names (every object version, e.g. the console's Empty "
                 "action), then run llmcloud destroy again",
        )
    if "servicealreadyexistsinsoftdeletedstate" in lower:
        # Azure keeps a deleted API Management service soft-deleted for 48 hours, its name
        # blocked: the `up` after a `destroy` of the same stack asks for that name again
        found = re.search(r"Api service (\S+?)\.? was soft-deleted", text, re.IGNORECASE)
        service = found.group(1) if found else "<the service the error names>"
        return DeploymentError(
            f"stack '{stack}' needs API Management service '{service}', which Azure keeps "
            "soft-deleted after a destroy",
            context="a deleted API Management service stays soft-deleted for 48 hours, its "
                    f"name unusable until it is purged ({_last_error_line(text)})",
            hint=f"purge it: az apim deletedservice purge --service-name {service} "
                 "--location <the stack's region> (az apim deletedservice list shows it), "
                 f"then run llmcloud up --provider azure --stack {stack} again",
        )
    if any(sign in lower for sign in _NAME_TAKEN):
        # the names are the stack's own (`llm-<stack>-...`), the same in every region and
        # every project: another stack of this name, or a leftover, holds one of them
        return DeploymentError(
            f"a resource stack '{stack}' names is already taken in the cloud",
            context=_last_error_line(text),
            hint="a stack of the same name in another region or llmcloud project of this "
                 "account, a resource a destroy kept or a failed update made without "
                 "recording it, or one made by hand holds it: give this stack a name of its "
                 "own (llmcloud init --stack NAME), or delete the resource the error names "
                 "(pulumi import adopts it instead)",
        )
    reason = _last_error_line(text, limit=None)  # (the whole line: the limit comes last)
    short = short_of_gpus(reason.lower())
    if short:
        message, hint, sign = short
        return DeploymentError(message.format(stack=stack), context=_around(reason, sign),
                               hint=hint)
    if any(sign in lower for sign in _CREDENTIALS_REFUSED):
        # the CLI's own check saw credentials (a profile, a token): the cloud refused them
        return CredentialsError(
            f"the cloud refused the credentials for stack '{stack}': missing, invalid or "
            "expired",
            context=_last_error_line(text),
            hint=f"renew them ({cloud_login or 'your cloud CLI login'}), then run the "
                 "command again",
        )
    return DeploymentError(
        f"the Pulumi engine failed on stack '{stack}'",
        context=_last_error_line(text),
        hint="run again with --debug for the engine's full output",
    )


#: the stack's own verdict, which says nothing of why ("error: update failed")
_VERDICT = re.compile(r"error: (update|preview|destroy|refresh|import) failed\.?", re.IGNORECASE)
#: a resource's header in the Diagnostics ("aws:s3/bucket:Bucket (llm-dev-store):")
_RESOURCE_HEADER = re.compile(r"[^\s:]+:\S+ \(.*\):")
#: a provider's header above its causes ("error: 1 error occurred:", then "* creating ...")
_CAUSES_FOLLOW = re.compile(r"(error: )?\d+ errors? occurred:?", re.IGNORECASE)


def _last_error_line(text: str, limit: int | None = 400) -> str:
    """The line that says why the engine failed: the cloud's own message when the engine's
    Diagnostics name one (the first resource's error), else the last line with an error.

    Pulumi prints the stack's "error: update failed" in the Diagnostics too, before or
    after the resources' errors: taken as the last error line, it hid the cloud's reason
    (a quota, capacity, a name taken) behind "run again with --debug"."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Diagnostics:" in lines:
        diagnostics = lines[len(lines) - lines[::-1].index("Diagnostics:"):]
        if "Resources:" in diagnostics:
            diagnostics = diagnostics[:diagnostics.index("Resources:")]
        for number, line in enumerate(diagnostics):
            if not line.lower().startswith("error:") or _VERDICT.fullmatch(line):
                continue
            block = []  # the lines up to the next resource's header
            for following in diagnostics[number + 1:]:
                if _RESOURCE_HEADER.fullmatch(following):
                    break
                block.append(following)
            if _CAUSES_FOLLOW.fullmatch(line) and block:
                line = block[0].lstrip("* ")
            elif line.lower().endswith("unhandled exception:") and block:
                line = block[-1]  # a traceback's last line names the exception
            return line[:limit]
    errors = [line for line in lines if "error" in line.lower() and not _VERDICT.fullmatch(line)]
    if errors:
        return errors[-1][:limit]
    return lines[-1][:limit] if lines else "no output"


#: how long the Pulumi engine gets to finish cancelling after a SIGTERM before it is told to
#: stop at once (a CI runner sends SIGKILL sooner: GitLab's shell executor 10 s after its
#: SIGTERM, GitHub's runner 2.5 s after)
CANCEL_AFTER_SIGTERM_SECONDS = 60.0

#: the engine processes started by the operation on this thread (see `_EnginePopen`)
_engine = threading.local()


class _EnginePopen(subprocess.Popen):
    """The Automation API's `Popen` during an operation `run_to_the_end` watches: the pulumi
    CLI starts in a session of its own, and llmcloud forwards it each signal it gets.

    In llmcloud's process group, a terminal's Ctrl-C (or a CI runner's SIGTERM to the group)
    reached the CLI and llmcloud both, while a `kill -INT` of llmcloud never reached it, and
    llmcloud could not tell one from the other: forwarding, it would have made one Ctrl-C
    two, and the CLI stops at once at its second signal."""

    def __init__(self, *args: Any, **kwargs: Any):
        processes = getattr(_engine, "processes", None)
        if processes is not None:
            kwargs["start_new_session"] = True
        super().__init__(*args, **kwargs)
        if processes is not None:
            processes.append(self)


class _EngineSubprocess:
    """`subprocess` as the Automation API's command runner sees it: `Popen` is `_EnginePopen`."""

    Popen = _EnginePopen

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)


def _watch_engine_processes() -> bool:
    """Have the Automation API start the pulumi CLI through `_EnginePopen`. False where its
    command runner is not the one llmcloud knows: the CLI then stays in llmcloud's group,
    where a terminal's Ctrl-C still reaches it."""
    from pulumi.automation import _cmd

    if isinstance(getattr(_cmd, "subprocess", None), _EngineSubprocess):
        return True
    if getattr(_cmd, "subprocess", None) is not subprocess:
        return False
    _cmd.subprocess = _EngineSubprocess()
    return True


class _Terminated(KeyboardInterrupt):
    """SIGTERM during an engine operation: an interruption, as a first Ctrl-C is."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def run_to_the_end(operation: Callable[[], Any], name: str, stack: str,
                   grace_seconds: float = 10.0) -> Any:
    """Run the engine's `operation` (named `name`) on a worker thread, so that Ctrl-C or
    SIGTERM lets the Pulumi engine stop cleanly; after one, raise `InterruptedOperation`
    (exit 130; 143 after SIGTERM) saying in what state the stack was left.

    The pulumi CLI cancels at its first SIGINT or SIGTERM: it finishes the resource
    operations in flight, records them and unlocks the stack (a second stops it at once).
    Run on the main thread, the Automation API's pipes to the CLI were closed as the
    KeyboardInterrupt went up through it, and a SIGTERM (a cancelled or timed-out CI job)
    ended Python at once: either way the CLI died of SIGPIPE at its next line of output and
    the stack stayed locked ("another update is in progress") with operations pending
    (pulumi/pulumi#9103). Called on the main thread (on POSIX), llmcloud tells the CLI
    itself: one SIGINT for each SIGINT or SIGTERM llmcloud gets. After a SIGTERM it waits
    `CANCEL_AFTER_SIGTERM_SECONDS` for the cancellation, then tells the CLI to stop at once;
    once it is stopping at once, `grace_seconds`.
    """
    watched = (os.name == "posix" and threading.current_thread() is threading.main_thread()
               and _watch_engine_processes())
    processes: list[subprocess.Popen] = []
    outcome: dict[str, Any] = {}
    done = threading.Event()  # (not Thread.join: Python 3.11's, interrupted, marks the
    # thread stopped while it runs)

    def work() -> None:
        if watched:
            _engine.processes = processes
        try:
            outcome["result"] = operation()
        except BaseException as exc:  # handed to the main thread
            outcome["error"] = exc
        finally:
            done.set()

    previous = signal.getsignal(signal.SIGTERM) if watched else None
    if previous is signal.SIG_DFL:  # (left alone where SIGTERM is ignored or handled)
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        threading.Thread(target=work, name=f"pulumi {name}", daemon=True).start()
        presses, terminated = _wait(done, processes, name, stack, grace_seconds,
                                    forward=watched)
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if not presses:
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]
    error = _interrupted(name, stack, presses, not done.is_set(), "result" in outcome,
                         terminated)
    if terminated:
        error.exit_code = ExitCode.TERMINATED
    raise error


def _wait(done: threading.Event, processes: list[subprocess.Popen], name: str, stack: str,
          grace_seconds: float, forward: bool) -> tuple[int, bool]:
    """Wait for the operation, telling the engine of each interruption; return how many
    there were ("presses") and whether one was a SIGTERM."""
    presses, terminated = 0, False
    deadline: float | None = None
    told: dict[int, int] = {}  # pid: the SIGINTs the engine process got from llmcloud
    while not done.is_set():
        try:
            if forward and presses:
                _tell_engine(processes, told, presses)  # (one started since is told too)
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                if presses >= 2:
                    break
                presses += 1  # SIGTERM's wait ran out
                deadline = time.monotonic() + grace_seconds
                _say(name, stack, presses, terminated)
                continue
            if forward and presses:
                timeout = 0.25 if timeout is None else min(timeout, 0.25)
            done.wait(timeout)
        except KeyboardInterrupt as interruption:
            presses += 1
            if isinstance(interruption, _Terminated):
                terminated = True
            if presses >= 2:
                deadline = time.monotonic() + grace_seconds
            elif terminated:
                deadline = time.monotonic() + CANCEL_AFTER_SIGTERM_SECONDS
            _say(name, stack, presses, terminated)
    if forward and presses and not done.is_set():
        _tell_engine(processes, told, presses)
    return presses, terminated


def _tell_engine(processes: list[subprocess.Popen], told: dict[int, int], presses: int) -> None:
    """Send each running engine process SIGINTs up to `presses` (the pulumi CLI counts a
    SIGTERM as it counts a SIGINT: the first cancels, the second stops it at once)."""
    for process in list(processes):
        while told.get(process.pid, 0) < min(presses, 2) and process.poll() is None:
            process.send_signal(signal.SIGINT)
            told[process.pid] = told.get(process.pid, 0) + 1


def _say(name: str, stack: str, presses: int, terminated: bool) -> None:
    why = " (SIGTERM)" if terminated else ""
    print(f"{name} of stack '{stack}'{why}: the Pulumi engine is cancelling, finishing the "
          "operations in flight" if presses == 1 else
          f"{name} of stack '{stack}'{why}: the Pulumi engine is stopping at once",
          file=sys.stderr, flush=True)


def _interrupted(name: str, stack: str, presses: int, running: bool,
                 finished: bool, terminated: bool = False) -> InterruptedOperation:
    """What an interrupted operation left, as the error the user reads."""
    why = " (SIGTERM)" if terminated else ""
    if running:
        return InterruptedOperation(
            f"{name} of stack '{stack}' interrupted{why}; the Pulumi engine had not stopped",
            context="it may still hold the stack's lock, with operations pending",
            hint=f"once no update runs: pulumi cancel --stack {stack} --yes, then "
                 f"llmcloud refresh --stack {stack}")
    if finished:
        return InterruptedOperation(
            f"{name} of stack '{stack}' interrupted{why} after the engine had finished it",
            context="the stack is as the operation left it",
            hint=f"llmcloud status --stack {stack}")
    if presses == 1:
        return InterruptedOperation(
            f"{name} of stack '{stack}' cancelled{why}",
            context="the Pulumi engine stopped cleanly: what it created is recorded, and the "
                    "stack is unlocked",
            hint="run the command again to continue")
    return InterruptedOperation(
        f"{name} of stack '{stack}' stopped at once " + (
            "(SIGTERM, and the engine had not finished cancelling)" if terminated else
            "(Ctrl-C twice)"),
        context="operations in flight were not recorded: resources may exist that Pulumi "
                "does not know of",
        hint=f"llmcloud refresh --stack {stack}; if it reports pending creates, check "
             "them in the cloud's console, then pulumi refresh --stack "
             f"{stack} --clear-pending-creates")


class PulumiStack:
    """The lifecycle operations of one stack, over the Automation API."""

    def __init__(
        self,
        project_dir: Path,
        stack: str,
        environ: Mapping[str, str],
        *,
        opener: StackOpener = open_stack,
        on_event: Callable[[Any], None] | None = None,
        flags: Mapping[str, Any] | None = None,
        create: bool = False,
    ):
        """Open `stack`; only with `create` (up, update, preview) is a missing one created,
        else it is `MissingStackError` (exit 2)."""
        from pulumi import automation as auto

        self.stack_name = stack
        self.on_event = on_event
        #: the command that renews the cloud's credentials, for hints (the provider sets it)
        self.cloud_login: str | None = None
        try:
            self._stack = opener(project_dir, stack, workspace_env(environ, flags), create)
        except auto.errors.StackNotFoundError:
            raise MissingStackError(stack, environ) from None
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, stack) from None

    def _run(self, operation: str, **kwargs: Any) -> Any:
        from pulumi import automation as auto

        if self.on_event is not None:
            kwargs["on_event"] = self.on_event
        try:
            return run_to_the_end(lambda: getattr(self._stack, operation)(**kwargs),
                                  operation, self.stack_name)
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name, self.cloud_login) from None

    def set_config(self, values: Mapping[str, Any]) -> None:
        """Record spec values in the stack's config (`Pulumi.<stack>.yaml`), keyed by dotted
        path (`compute.max_replicas`), so a later plain `pulumi up` keeps them."""
        from pulumi import automation as auto

        if not values:
            return
        config = {
            f"{NAMESPACE}:{key}": auto.ConfigValue(
                value=value if isinstance(value, str) else json.dumps(value)
            )
            for key, value in values.items()
        }
        try:
            self._stack.set_all_config(config, path=True)
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name, self.cloud_login) from None

    def up(self) -> dict[str, Any]:
        """Run the program and apply the changes; return the stack outputs as plain values."""
        result = self._run("up", color="never")
        return unwrap_outputs(result.outputs)

    def preview(self) -> dict[str, Any]:
        """What `up` would change, as {operation: count}."""
        result = self._run("preview", color="never")
        return {"changes": dict(result.change_summary or {})}

    def destroy(self) -> dict[str, Any]:
        """Delete every resource of the stack."""
        result = self._run("destroy", color="never")
        return {"changes": dict(result.summary.resource_changes or {})}

    def refresh(self) -> dict[str, Any]:
        """Read the real state of every resource into the stack."""
        result = self._run("refresh", color="never")
        return {"changes": dict(result.summary.resource_changes or {})}

    def outputs(self) -> dict[str, Any]:
        """The stack's current outputs as plain values."""
        return unwrap_outputs(self._stack.outputs())

    def stack_names(self) -> list[str]:
        """The names of the project's stacks in this backend, this one included (a Pulumi
        Cloud backend may qualify them with the organization: only the stack's part)."""
        return [summary.name.rsplit("/", 1)[-1]
                for summary in self._stack.workspace.list_stacks()]

    def last_update(self) -> dict[str, Any] | None:
        """The last update's kind, result and end time, or None before the first."""
        info = self._stack.info()
        if info is None:
            return None
        return {
            "kind": info.kind,
            "result": info.result,
            "end_time": info.end_time.isoformat() if info.end_time else None,
            "changes": dict(info.resource_changes or {}),
        }

    def update_in_progress(self) -> bool:
        """Whether the backend lists an update of the stack running now (the Pulumi Cloud
        does, its result "in-progress"). A bucket or file backend lists an update only once
        it has ended: its lock says more (`providers/update_in_progress.py`). Config secrets
        stay encrypted: `--show-secrets` would decrypt them (the passphrase, a KMS call, an
        audit event in the Pulumi Cloud for a third-party secrets provider)."""
        info = self._read(lambda: self._stack.info(show_secrets=False))
        return info is not None and info.result == "in-progress"

    def backend_url(self) -> str | None:
        """The URL of the stack's backend (`pulumi whoami --json`): https://api.pulumi.com,
        s3://BUCKET, file://FOLDER, ..."""
        return self._read(self._stack.workspace.who_am_i).url

    def _read(self, read: Callable[[], Any]) -> Any:
        from pulumi import automation as auto

        try:
            return read()
        except auto.errors.CommandError as exc:
            raise translate_command_error(exc, self.stack_name, self.cloud_login) from None


def unwrap_outputs(outputs: Mapping[str, Any]) -> dict[str, Any]:
    """`{name: OutputValue}` -> `{name: value}`, with secrets masked."""
    plain = {}
    for name, output in (outputs or {}).items():
        secret = getattr(output, "secret", False)
        plain[name] = "[secret]" if secret else getattr(output, "value", output)
    return plain
