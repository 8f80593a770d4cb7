"""A GCP GPU server leaves its balancer on the metadata server's host maintenance notice
(`instance/maintenance-event` turns TERMINATE_ON_HOST_MAINTENANCE a minute before the VM
stops), not only when the shutdown script runs; the shutdown script then does not leave, nor
wait for the leave, a second time. A maintenance Google cancels or reschedules (the key back
to NONE, the VM still up) brings the server back, unless the VM is stopping. The scripts run
in the sandbox of test_boot_scripts_run, with stubbed curl, docker and sleep."""

from __future__ import annotations

import re
import time

import pytest

from llmcloud.providers.gcp import startup
from llmcloud.providers.gcp.startup import render_shutdown_script
from tests.providers.test_boot_scripts_run import _gcp, _helper, _sandbox_works, run_script

pytestmark = pytest.mark.skipif(not _sandbox_works(),
                                reason="needs bash and a working `unshare -rm`")

TERMINATE = "TERMINATE_ON_HOST_MAINTENANCE"
LEFT_AT = "/var/lib/llmcloud/left-at"
LEAVE = ["docker", "kill", "--signal", "USR1", "llmcloud-server"]
NO_RESTART = ["docker", "update", "--restart", "no", "llmcloud-server"]
RESTART = ["docker", "update", "--restart", "unless-stopped", "llmcloud-server"]
START = ["docker", "start", "llmcloud-server"]
STOPPING = "/var/lib/llmcloud/stopping"
#: the watcher's exit once the stub curl has no answer left (it ends it: the watcher itself
#: watches for as long as the VM runs)
ENDED = 128 + 15


def _metadata(*answers: str) -> str:
    """A curl that answers the n-th look-up with the n-th answer: a value (with an etag
    header written where -D asks), or FAIL (curl -f's exit on an HTTP error); after the
    last, it ends the watcher that called it."""
    cases = "\n".join(
        f"  {n}) exit 22 ;;" if answer == "FAIL" else
        f"  {n}) printf 'HTTP/1.1 200 OK\\r\\nETag: e{n}\\r\\n\\r\\n' > \"$H\"; echo {answer} ;;"
        for n, answer in enumerate(answers, 1))
    return f"""H=/dev/null
for ((i = 1; i < $#; i++)); do [ "${{!i}}" = -D ] && {{ j=$((i + 1)); H=${{!j}}; }}; done
echo x >> "$STATE/looked"
case $(wc -l < "$STATE/looked") in
{cases}
  *) kill -TERM "$PPID"; exit 22 ;;
esac"""


def _watcher() -> str:
    return _helper(_gcp(), "llmcloud-maintenance") + "\n"


def _acts(run) -> list[list[str]]:
    """The curl, docker and sleep calls, in order."""
    return [c for c in run.calls if c[0] in ("curl", "docker", "sleep")]


def _left_at(tmp_path, at: int) -> None:
    """Write the watcher's mark, as a leave `at` epoch seconds would have left it."""
    (tmp_path / "upper2" / "lib" / "llmcloud").mkdir(parents=True)
    (tmp_path / "upper2" / "lib" / "llmcloud" / "left-at").write_text(f"{at}\n")


def test_the_watcher_leaves_on_the_terminate_notice(tmp_path):
    run = run_script(_watcher(), tmp_path,
                     {"curl": _metadata("NONE", "MIGRATE_ON_HOST_MAINTENANCE", TERMINATE)})
    assert run.rc == ENDED, run.out
    acts = _acts(run)
    looks = [c for c in acts if c[0] == "curl"]
    assert len(looks) == 4
    # nothing before the notice; then the leave, and no restart of the server it drains
    assert acts[3:5] == [LEAVE, NO_RESTART], acts
    assert acts[5][0] == "curl" and not acts[6:], acts  # and it goes on watching
    # hanging GETs, each from the etag the last one answered, under curl's own limit
    urls = [c[-1] for c in looks]
    assert all(u.startswith("http://metadata.google.internal/computeMetadata/v1/instance/"
                            "maintenance-event?wait_for_change=true&timeout_sec=") for u in urls)
    assert [re.search(r"last_etag=(\w+)", u).group(1) for u in urls] == ["0", "e1", "e2", "e3"]
    wait = int(re.search(r"timeout_sec=(\d+)", urls[0]).group(1))
    assert all(int(c[c.index("-m") + 1]) > wait for c in looks)
    assert all("Metadata-Flavor: Google" in c for c in looks)
    left = int(run.written(LEFT_AT).read_text())
    assert abs(left - time.time()) < 30


def test_the_watcher_backs_off_while_the_metadata_server_fails(tmp_path):
    # a 503 during maintenance, or no network yet at boot: doubling pauses, capped so the
    # notice is still seen with time to leave
    run = run_script(_watcher(), tmp_path,
                     {"curl": _metadata(*["FAIL"] * 6, "NONE", "FAIL", TERMINATE)})
    assert run.rc == ENDED, run.out
    sleeps = [c[1] for c in run.called("sleep")]
    assert sleeps == ["1", "2", "4", "8", "8", "8", "1"]  # and from 1 again after an answer
    assert run.called(*LEAVE) and run.called(*NO_RESTART)


def test_the_watcher_without_a_server_leaves_no_mark(tmp_path):
    # the notice before the container runs: the shutdown script must take the leave itself
    docker = 'case "$1" in kill) exit 1 ;; esac'
    run = run_script(_watcher(), tmp_path, {"curl": _metadata(TERMINATE), "docker": docker})
    assert run.rc == ENDED, run.out
    assert not run.written(LEFT_AT).exists()
    assert not run.called("docker", "update")


def _shutdown(tmp_path, maintenance: str = TERMINATE, preempted: str = "FALSE"):
    curl = f"""case "$*" in
  *instance/preempted*) echo {preempted} ;;
  *instance/maintenance-event*) echo {maintenance} ;;
esac"""
    return run_script(render_shutdown_script(45), tmp_path, {"curl": curl})


def _stops(run) -> list[list[str]]:
    return [c for c in run.calls if c[0] in ("sleep", "docker")]


def test_the_shutdown_after_the_watcher_left_does_not_leave_again(tmp_path):
    # the notice came a minute before: the leave is over, the stop comes at once
    _left_at(tmp_path, int(time.time()) - 60)
    run = _shutdown(tmp_path)
    assert run.rc == 0, run.out
    assert _stops(run) == [["docker", "stop", "-t", "60", "llmcloud-server"]]


def test_the_shutdown_waits_only_what_is_left_of_the_watchers_leave(tmp_path):
    _left_at(tmp_path, int(time.time()) - 4)
    run = _shutdown(tmp_path, maintenance="NONE", preempted="TRUE")
    assert run.rc == 0, run.out
    [sleep, stop] = _stops(run)
    left = startup.LEAVE_SECONDS - 4
    assert sleep[0] == "sleep" and left - 2 <= int(sleep[1]) <= left, sleep
    assert stop == ["docker", "stop", "-t", "5", "llmcloud-server"]


def test_the_gcp_boot_runs_the_watcher_and_forgets_an_old_leave(tmp_path):
    _left_at(tmp_path, 1)  # a leave before a reboot: this boot's server has not left
    run = run_script(_gcp(), tmp_path)
    assert run.rc == 0, run.out
    assert run.called("systemctl", "enable", "--now", "llmcloud-maintenance.service")
    unit = run.written("/etc/systemd/system/llmcloud-maintenance.service").read_text()
    assert "ExecStart=/usr/local/bin/llmcloud-maintenance\n" in unit
    assert "Restart=on-failure\n" in unit  # a restart after its leave would leave again
    # systemd-analyze verify takes the unit, without a word about it
    assert "FAILED" not in run.verify and "llmcloud-maintenance" not in run.verify, run.verify
    assert not run.written(LEFT_AT).exists()
    assert not run.written(STOPPING).exists()


def test_a_cancelled_maintenance_brings_the_server_back(tmp_path):
    # Google rescheduled the maintenance: the key turns back to NONE and the VM goes on
    run = run_script(_watcher(), tmp_path, {"curl": _metadata("NONE", TERMINATE, "NONE")})
    assert run.rc == ENDED, run.out
    docker = [c for c in run.calls if c[0] == "docker"]
    # its restart policy back before the start: a server still draining exits, and Docker
    # starts it again
    assert docker == [LEAVE, NO_RESTART, RESTART, START], docker
    assert not run.written(LEFT_AT).exists()  # a later stop leaves in full


def test_the_watcher_leaves_again_at_the_next_notice(tmp_path):
    run = run_script(_watcher(), tmp_path,
                     {"curl": _metadata(TERMINATE, "NONE", TERMINATE)})
    assert run.rc == ENDED, run.out
    docker = [c for c in run.calls if c[0] == "docker"]
    assert docker == [LEAVE, NO_RESTART, RESTART, START, LEAVE, NO_RESTART], docker
    assert run.written(LEFT_AT).exists()


def test_a_restarted_watcher_does_not_leave_twice(tmp_path):
    # systemd starts it again after a crash: it sees the notice again, but left already
    _left_at(tmp_path, int(time.time()) - 20)
    run = run_script(_watcher(), tmp_path, {"curl": _metadata(TERMINATE)})
    assert run.rc == ENDED, run.out
    assert not run.called("docker")


def test_a_stopping_vm_gets_no_server_back(tmp_path):
    # the VM stops after all (the shutdown script began) as the key turns back to NONE
    _left_at(tmp_path, int(time.time()) - 30)
    run = _shutdown(tmp_path)
    assert run.rc == 0, run.out
    assert run.written(STOPPING).exists()
    run = run_script(_watcher(), tmp_path, {"curl": _metadata("NONE")})
    assert run.rc == ENDED, run.out
    assert not run.called("docker")


def test_the_shutdown_after_the_server_came_back_leaves_in_full(tmp_path):
    # the other order: the server came back, then a new notice's stop finds no leave
    run = run_script(_watcher(), tmp_path, {"curl": _metadata(TERMINATE, "NONE")})
    assert run.rc == ENDED, run.out
    run = _shutdown(tmp_path)
    assert run.rc == 0, run.out
    assert _stops(run) == [LEAVE, ["sleep", str(startup.LEAVE_SECONDS)],
                           ["docker", "stop", "-t", "60", "llmcloud-server"]]


def test_the_watcher_sees_the_notice_with_time_to_leave():
    # the longest pause between tries, the balancer's checks and a few seconds for the
    # script fit the minute between the notice and the stop
    assert (startup.METADATA_BACKOFF_MAX_SECONDS + startup.LEAVE_SECONDS
            + startup.SCRIPT_SLACK_SECONDS <= startup.MAINTENANCE_EVENT_NOTICE_SECONDS)
    watcher = _watcher()
    assert f"MAX={startup.METADATA_BACKOFF_MAX_SECONDS}" in watcher
    assert f"  {startup.MAINTENANCE_EVENT}) locked leave ;;" in watcher
