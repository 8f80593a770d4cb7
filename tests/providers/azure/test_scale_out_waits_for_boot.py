"""The scale set's autoscale rule that adds a server waits at least as long as a new server
takes to boot (the scale set's repair grace period, sized for the model load).

Azure counts a rule's cooldown from the scaling action, and a server still loading its
model posts no in-flight gauge: the servers that serve read above the target until the
new one serves, so a scale-out cooldown shorter than the boot added another GPU server per
cooldown (five minutes by default, against 24 for an 80 GB model). AWS's warm-up and GCP's
cooldown period already wait for the boot."""

from __future__ import annotations

import re

import pytest

from tests.providers.azure.helpers import AUTOSCALE, VMSS, declared, one


def _minutes(duration: str) -> int:
    found = re.fullmatch(r"PT(\d+)M", duration)
    assert found, duration
    return int(found[1])


def _waits(resources) -> tuple[int, int, int]:
    """The boot the scale set allows a new server, and the scale-out and scale-in waits."""
    boot = one(resources, VMSS).inputs["automaticRepairsPolicy"]["gracePeriod"]
    rules = one(resources, AUTOSCALE).inputs["profiles"][0]["rules"]
    wait = {r["scaleAction"]["direction"]: r["scaleAction"]["cooldown"] for r in rules}
    return _minutes(boot), _minutes(wait["Increase"]), _minutes(wait["Decrease"])


@pytest.mark.parametrize("signal", ["in_flight", "requests"])
def test_a_scale_out_waits_for_the_new_server_to_boot(signal):
    target = 8 if signal == "in_flight" else 120  # concurrent, or a minute's requests
    resources, _ = declared(autoscaling={"signal": signal, "target": target,
                                         "cooldown_seconds": 300})
    boot, scale_out, scale_in = _waits(resources)
    assert boot > 5  # the default A100 80 GB loads for longer than the default cooldown
    assert scale_out >= boot
    assert scale_in == 5  # removing a server still waits the spec's cooldown


def test_a_cooldown_longer_than_the_boot_still_stands():
    resources, _ = declared(autoscaling={"cooldown_seconds": 3600})
    boot, scale_out, scale_in = _waits(resources)
    assert boot < 60 and scale_out == scale_in == 60
