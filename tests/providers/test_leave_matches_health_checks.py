"""The leave a server takes before it drains, where its balancer did not drain it (a GCP
preemption or host maintenance, an AWS spot interruption), lasts as long as the balancer's
declared health check takes to stop routing to it, with the slack of one more check (its
interval and timeout: a check that ran just before the leave began), and fits the cloud's
notice with the stop after it: read from the stacks declared under Pulumi's mocks."""

from __future__ import annotations

import re

import pytest

from tests.providers.declared import boot_script, declared_for, of_type, one

#: the clouds' notices: a Spot VM's preemption (ACPI soft off to mechanical off), a
#: standard VM's stop, and an AWS spot interruption
GCP_PREEMPTION_S = 30
GCP_STOP_S = 120
AWS_SPOT_NOTICE_S = 120


def _server_leave(boot: str) -> int:
    return int(re.search(r"--leave-seconds (\d+)", boot).group(1))


def _down_with_slack(interval: int, threshold: int, timeout: int) -> int:
    """The failed checks that mark a server down, and one more check."""
    return interval * threshold + interval + timeout


def _gcp_health_check(resources) -> dict:
    [check] = [r for r in of_type(resources, "gcp:compute/healthCheck:HealthCheck")
               if r.inputs["name"].endswith("-ready")]
    return check.inputs


@pytest.mark.parametrize("spot", [False, True])
def test_gcp_leave_lasts_as_long_as_the_balancer_checks_take(spot):
    resources, _ = declared_for("gcp", compute={"spot": spot, "max_replicas": 3})
    check = _gcp_health_check(resources)
    down = _down_with_slack(check["checkIntervalSec"], check["unhealthyThreshold"],
                            check["timeoutSec"])
    templates = of_type(resources, "gcp:compute/instanceTemplate:InstanceTemplate")
    assert len(templates) == (2 if spot else 1)
    for template in templates:
        shutdown = template.inputs["metadata"]["shutdown-script"]
        leaves = [int(s) for s in re.findall(r"docker kill --signal USR1 \S+ "
                                             r"[^\n]*&& sleep (\d+)", shutdown)]
        assert leaves == [down], shutdown
        assert _server_leave(template.inputs["metadataStartupScript"]) == down
        # a preemption's stop, after the leave and a few seconds for the script, fits its
        # 30 s; host maintenance's fits a standard VM's 120 s
        preempted = re.search(r"preempted\)\" = TRUE \]; then\n  leave_then_stop (\d+)",
                              shutdown)
        maintenance = re.search(r"TERMINATE_ON_HOST_MAINTENANCE \]; then\n  "
                                r"leave_then_stop (\d+)", shutdown)
        assert down + int(preempted.group(1)) + 5 <= GCP_PREEMPTION_S
        assert down + int(maintenance.group(1)) + 5 <= GCP_STOP_S
        # and still some seconds to end the streams cleanly before the VM goes
        assert int(preempted.group(1)) >= 5


def test_aws_spot_leave_lasts_as_long_as_the_alb_checks_take():
    resources, _ = declared_for("aws", compute={"spot": True, "max_replicas": 3})
    check = one(resources, "aws:lb/targetGroup:TargetGroup").inputs["healthCheck"]
    down = _down_with_slack(check["interval"], check["unhealthyThreshold"], check["timeout"])
    boot = boot_script("aws", resources)
    watcher = boot.split("cat > /usr/local/bin/llmcloud-spot <<'SCRIPT'\n", 1)[1].split(
        "\nSCRIPT\n", 1)[0]
    poll = int(re.search(r"while sleep (\d+)", watcher).group(1))
    leave = int(re.search(r"docker kill --signal USR1 \S+ [^\n]*&& sleep (\d+)",
                          watcher).group(1))
    stop = int(re.search(r"docker stop -t (\d+) ", watcher).group(1))
    assert leave == down == _server_leave(boot)
    # the notice is seen within a poll; the instance's own shutdown needs a few seconds
    assert poll + leave + stop + 5 <= AWS_SPOT_NOTICE_S
    assert stop >= 30  # enough for the streams near their end to finish
