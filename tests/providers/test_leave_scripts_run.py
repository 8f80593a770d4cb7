"""A server its load balancer did not drain (a preempted GCP VM, one stopped for host
maintenance, a reclaimed AWS spot instance) leaves it first: the scripts send SIGUSR1
(readiness 503, new requests still served), wait as long as the balancer's checks take to
fail, then stop it within what is left of the cloud's notice. The scripts run in the
sandbox of test_boot_scripts_run, with stubbed curl, docker and sleep."""

from __future__ import annotations

import pytest

from llmcloud.providers.gcp.startup import render_shutdown_script
from tests.providers.test_boot_scripts_run import (
    _after,
    _aws,
    _gcp,
    _helper,
    _sandbox_works,
    run_script,
)

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")


def _gcp_metadata(preempted: str, maintenance: str) -> str:
    return f"""case "$*" in
  *instance/preempted*) echo {preempted} ;;
  *instance/maintenance-event*) echo {maintenance} ;;
esac"""


def _stops(run) -> list[list[str]]:
    """The docker and sleep calls, in order."""
    return [c for c in run.calls if c[0] == "sleep" or c[:2] in (["docker", "kill"],
                                                                   ["docker", "stop"])]


@pytest.mark.parametrize(("preempted", "maintenance", "stop"), [
    ("TRUE", "NONE", "5"),  # 30 s in all: 20 s to leave, 5 to stop, 5 for the script
    ("FALSE", "TERMINATE_ON_HOST_MAINTENANCE", "60"),  # the whole drain (45 s) and a margin
])
def test_gcp_shutdown_leaves_the_balancer_on_a_preemption_or_maintenance(
        tmp_path, preempted, maintenance, stop):
    run = run_script(render_shutdown_script(45), tmp_path,
                     {"curl": _gcp_metadata(preempted, maintenance)})
    assert run.rc == 0, run.out
    # the balancer's check: every 5 s, down after 2 failures, and one more check (its 5 s
    # apart and 5 s timeout)
    assert _stops(run) == [["docker", "kill", "--signal", "USR1", "llmcloud-server"],
                           ["sleep", "20"],
                           ["docker", "stop", "-t", stop, "llmcloud-server"]]


@pytest.mark.parametrize("curl", [_gcp_metadata("FALSE", "NONE"), "exit 7"])
def test_gcp_shutdown_of_a_deleted_server_drains_at_once(tmp_path, curl):
    # the group's own deletions drained it at the balancer already (and a metadata server
    # that does not answer must not hold up the stop)
    run = run_script(render_shutdown_script(45), tmp_path, {"curl": curl})
    assert run.rc == 0, run.out
    assert _stops(run) == [["docker", "stop", "-t", "60", "llmcloud-server"]]


def test_the_gcp_server_leaves_as_long_as_the_shutdown_script_waits(tmp_path):
    run = run_script(_gcp(), tmp_path)
    [docker_run] = run.called("docker", "run")
    assert _after(docker_run, "--leave-seconds") == "20"


SPOT_NOTICE = """case "$*" in
  *api/token*) echo imds-token ;;
  *meta-data/instance-id*) echo i-0123 ;;
  *spot/instance-action*)
    # 404 (curl -f: 22) until the notice comes, at the third look
    echo x >> "$STATE/looked"; [ "$(wc -l < "$STATE/looked")" -ge 3 ] || exit 22
    echo '{"action": "terminate", "time": "2026-11-30T18:00:00Z"}' ;;
esac"""
#: `sleep` that lets ten rounds of a `while sleep` loop run at most
TEN_ROUNDS = 'echo x >> "$STATE/slept"; [ "$(wc -l < "$STATE/slept")" -lt 10 ]'


def test_aws_spot_interruption_leaves_the_alb_then_stops_within_the_notice(tmp_path):
    script = _helper(_aws(drain_timeout_seconds=300), "llmcloud-spot") + "\n"
    run = run_script(script, tmp_path, {"curl": SPOT_NOTICE, "sleep": TEN_ROUNDS})
    assert run.rc == 0, run.out  # done: systemd does not start it again
    assert len(run.called("curl", "-sf", "-m", "2", "-K", "-")) == 3
    # the ALB's check: every 15 s, down after 3 failures, and one more check (15 s apart,
    # 5 s timeout); then what is left of the two minutes (5 s to see the notice, 65 to
    # leave, 10 for the instance's own shutdown)
    assert _stops(run)[-3:] == [["docker", "kill", "--signal", "USR1", "llmcloud-server"],
                                ["sleep", "65"],
                                ["docker", "stop", "-t", "40", "llmcloud-server"]]
    assert not [c for c in run.calls if "imds-token" in " ".join(c[1:])]  # not in ps


def test_aws_spot_watcher_without_a_notice_leaves_the_server_alone(tmp_path):
    curl = 'case "$*" in *api/token*) echo imds-token ;; *) exit 22 ;; esac'
    script = _helper(_aws(), "llmcloud-spot") + "\n"
    run = run_script(script, tmp_path, {"curl": curl, "sleep": TEN_ROUNDS})
    assert not run.called("docker")


def test_the_aws_server_leaves_as_long_as_the_spot_watcher_waits(tmp_path):
    run = run_script(_aws(), tmp_path)
    assert run.rc == 0, run.out
    [docker_run] = run.called("docker", "run")
    assert _after(docker_run, "--leave-seconds") == "65"
    assert run.called("systemctl", "enable", "--now", "llmcloud-spot.service")
    assert "FAILED" not in run.verify, run.verify
