"""What every cloud's boot script shares about the model server container: its arguments and
how to read its in-flight requests from /metrics.

The image's entry point is `llmcloud-server --host 0.0.0.0`, listening on `LLMCLOUD_PORT`
(8080 in the image; the boot scripts set it to `server.port`, which its health check reads).
The boot scripts start it through `container_command`, which leaves out the flags that the
image's server does not know yet: a stack keeps the image it was deployed with until someone
pushes a new one, whatever llmcloud release renders its boot script later.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

#: how long a stop waits past the server's drain before it kills it (docker's
#: `--stop-timeout`, the clouds' shutdown scripts, the local supervisor): the server ends
#: the streams still open (up to 5 s), then closes its connections (up to 5 s), and exits 0
STOP_MARGIN_SECONDS = 15
#: the runtime's gauges whose sum is the requests a server holds (running + queued)
IN_FLIGHT_GAUGES = ("llmcloud:num_requests_running", "llmcloud:num_requests_waiting")
#: where the host's model cache is mounted in the container
CONTAINER_CACHE = "/models"
#: an image reference pinned by digest (`registry/repo@sha256:<64 hex>`)
DIGEST_REF = re.compile(r"^(?P<repo>[^@\s]+)@sha256:[0-9a-f]{64}$")
#: how long a cloud server keeps an idle connection: longer than the load balancer keeps one
#: to it, so the server never closes a connection the balancer is about to reuse (a 502 for
#: that client). Google's balancers hold backend connections 600 s and say to exceed it;
#: Azure's APIM gets the same; AWS's launch adds a margin over its ALB's idle timeout.
SERVER_KEEP_ALIVE_SECONDS = 620
#: the flags llmcloud adds by itself that the servers of earlier llmcloud releases do not
#: know: a container whose `llmcloud-server --help` does not list one starts without it (and
#: logs so), where its argparse would exit "unrecognized arguments" at every start. Add here
#: each such flag a later release passes; flags the user's spec asks for stay required.
LATER_FLAGS = ("--keep-alive-timeout", "--strip-path-prefix", "--leave-seconds")
#: the program a boot script's container runs, and the shell that runs it past LATER_FLAGS
SERVER_PROGRAM = "llmcloud-server"
CONTAINER_SHELL = "/bin/sh"


def server_arguments(
    *,
    model_uri: str,
    model_version: str,
    port: int,
    drain_timeout_seconds: int,
    max_batch_size: int,
    dtype: str,
    max_body_kb: int,
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS,
    api_keys_file: str | None = None,
    device: str = "cuda",
    engine_flags: Sequence[str] = (),
    task: str | None = None,
    leave_seconds: int | None = None,
) -> list[str]:
    """`llmcloud-server` arguments for a GPU server in the cloud; ``engine_flags`` are the
    spec's KV-cache and prefill settings (`ServerSpec.engine_flags()`); ``task`` the spec's
    `model.task` (None: the server reads it from the model's config); ``leave_seconds`` how
    long it leaves its load balancer on SIGUSR1 before it drains (None: its default)."""
    args = [
        "--host", "0.0.0.0", "--port", str(port), "--device", device,
        "--model", model_uri, "--model-version", model_version,
        "--dtype", dtype, "--max-batch-size", str(max_batch_size),
        "--drain-timeout", str(drain_timeout_seconds),
        "--max-body-bytes", str(max_body_kb * 1024), "--cache-dir", CONTAINER_CACHE,
        "--keep-alive-timeout", str(keep_alive_seconds),
    ]
    if api_keys_file is not None:
        args += ["--api-keys-file", api_keys_file]
    if task is not None:
        args += ["--task", task]
    if leave_seconds is not None:
        args += ["--leave-seconds", str(leave_seconds)]
    return args + list(engine_flags)


def leave_seconds(check_interval_seconds: int, unhealthy_threshold: int,
                  check_timeout_seconds: int) -> int:
    """How long a server its balancer did not drain leaves it (readiness 503, new requests
    still served) before it drains, given the balancer's health check: the failed checks
    that mark it down (threshold x interval), one more interval for a check that ran just
    before the leave began, or a prober out of step with the others, and the check's
    timeout for the last failure, which a loaded server may answer late."""
    return (check_interval_seconds * (unhealthy_threshold + 1)) + check_timeout_seconds


def known_flags_filter(later_flags: Sequence[str] = LATER_FLAGS) -> str:
    """A POSIX sh program (one line: boot scripts and `docker inspect` show it whole) that
    runs `llmcloud-server "$@"` without each of ``later_flags`` (and its value) that the
    image's `llmcloud-server --help` does not list; every other argument goes as given.
    When the help cannot be read, nothing is left out."""
    return "; ".join([
        f'later=" {" ".join(later_flags)} "',
        f'known=$({SERVER_PROGRAM} --help 2>/dev/null) || known=""',
        'skip=""',
        "for a do shift",
        'if [ -n "$skip" ]; then skip=""; continue; fi',
        'case "$later" in *" $a "*) case "$known" in ""|*"$a"*) ;; *) '
        f'echo "llmcloud: the {SERVER_PROGRAM} of this image predates $a (the image is '
        "older than the llmcloud that launched it): starting without it; build and push a "
        'newer image (llmcloud image build, llmcloud image push) and deploy the reference '
        'it prints" >&2; skip=1; continue ;; esac ;; esac',
        'set -- "$@" "$a"',
        "done",
        f'exec {SERVER_PROGRAM} "$@"',
    ])


def container_command(arguments: Sequence[str]) -> str:
    """What follows the options of a boot script's `docker run`: the image (`"$IMAGE"`, the
    script's variable) started through `known_flags_filter` with ``arguments``, all shell
    quoted. The image's own entry point is bypassed, so ``arguments`` carry `--host`."""
    q = shlex.quote
    return " ".join([f"--entrypoint {CONTAINER_SHELL}", '"$IMAGE"', "-c",
                     q(known_flags_filter()), SERVER_PROGRAM, *(q(a) for a in arguments)])


def in_flight_awk() -> str:
    """An awk program that prints the sum of the in-flight gauges in Prometheus text (0 when
    the server has none yet), labels and all."""
    names = "|".join(re.escape(g) for g in IN_FLIGHT_GAUGES)
    return f"$1 ~ /^({names})({{|$)/ {{s += $2}} END {{print s + 0}}"


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """What a server needs to start on any cloud; every field is a reference, never a secret.
    Each cloud's `ServerLaunch` adds the references its boot script needs."""

    image: str
    model_uri: str
    model_version: str
    port: int = 8080
    drain_timeout_seconds: int = 60
    max_batch_size: int = 16
    max_body_kb: int = 1024
    dtype: str = "auto"
    publish_in_flight: bool = True
    keep_alive_seconds: int = SERVER_KEEP_ALIVE_SECONDS
    engine_flags: tuple[str, ...] = ()
    #: the spec's `model.task`; None: the server reads it from the model's config
    task: str | None = None
    #: how long the server leaves the load balancer on SIGUSR1 before it drains: as long as
    #: the balancer's health checks take to stop routing to it (None: the server's default)
    leave_seconds: int | None = None

    #: what a pinned image reference looks like on this cloud
    digest_ref = DIGEST_REF

    def require_digest(self) -> None:
        """Raise ValueError unless the image is pinned by digest (a tag could move)."""
        if not self.digest_ref.match(self.image):
            raise ValueError(
                f"image must be pinned by digest (repo@sha256:...), got {self.image!r}")

    @property
    def registry_host(self) -> str:
        """The registry part of the image reference (`123.dkr.ecr.r.amazonaws.com`)."""
        return self.image.split("/", 1)[0]

    def arguments(self, api_keys_file: str | None = None) -> list[str]:
        """The server's arguments inside the container."""
        return server_arguments(
            model_uri=self.model_uri, model_version=self.model_version, port=self.port,
            drain_timeout_seconds=self.drain_timeout_seconds,
            max_batch_size=self.max_batch_size, dtype=self.dtype,
            max_body_kb=self.max_body_kb, keep_alive_seconds=self.keep_alive_seconds,
            api_keys_file=api_keys_file, engine_flags=self.engine_flags, task=self.task,
            leave_seconds=self.leave_seconds)

    def container_command(self, api_keys_file: str | None = None,
                          extra: Sequence[str] = ()) -> str:
        """The end of the boot script's `docker run`: the image and the server's arguments
        (``extra`` after them), through the filter of flags the image does not know."""
        return container_command([*self.arguments(api_keys_file), *extra])
