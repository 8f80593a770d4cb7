"""An in_flight autoscaling target the servers' gauge can never exceed is refused: a server
holds at most `server.max_batch_size` running plus `--max-queue` waiting requests, answers
429 to more, and the autoscalers add a server only above the target."""

from __future__ import annotations

import pytest

from llmcloud.inference_image.server_options import build_parser
from llmcloud.providers.server_launch import server_arguments
from llmcloud.stacks.config import resolve_spec
from llmcloud.stacks.errors import ConfigError
from llmcloud.stacks.spec import SERVER_MAX_QUEUE, in_flight_ceiling


def _spec(provider: str, **sections):
    return resolve_spec(file_values={"provider": provider, **sections}, environ={})


def test_the_ceiling_is_what_the_cloud_servers_run_with():
    """The wall the spec checks is the one the servers have: the clouds' launch arguments,
    parsed by the server's own parser."""
    args = build_parser().parse_args(server_arguments(
        model_uri="s3://b/models/m/v1", model_version="v1", port=8080,
        drain_timeout_seconds=60, max_batch_size=16, dtype="auto", max_body_kb=1024))
    assert args.max_queue == SERVER_MAX_QUEUE
    assert in_flight_ceiling(16) == args.max_batch_size + args.max_queue


@pytest.mark.parametrize("provider", ["aws", "gcp", "azure"])
def test_a_target_the_gauge_never_exceeds_is_refused(provider):
    with pytest.raises(ConfigError) as caught:
        _spec(provider, autoscaling={"target": 300}, server={"max_batch_size": 16})
    error = caught.value
    assert error.message == "invalid value for llmcloud:autoscaling.target"
    assert "at most 272" in error.context and "below 272" in error.context
    assert "(value 300.0 from" in error.context


def test_the_ceiling_itself_is_refused_and_just_below_it_accepted():
    with pytest.raises(ConfigError):
        _spec("aws", autoscaling={"target": in_flight_ceiling(64)},
              server={"max_batch_size": 64})
    spec = _spec("aws", autoscaling={"target": in_flight_ceiling(64) - 1},
                 server={"max_batch_size": 64})
    assert spec.autoscaling.target == 319


def test_a_larger_batch_makes_room_for_the_target():
    spec = _spec("gcp", autoscaling={"target": 300}, server={"max_batch_size": 64})
    assert spec.autoscaling.target == 300


def test_requests_and_local_are_not_bounded_by_it():
    """Requests a minute have no such wall; local runs no autoscaler."""
    assert _spec("aws", autoscaling={"signal": "requests", "target": 5000}).autoscaling.target
    assert _spec("local", autoscaling={"target": 5000}).autoscaling.target == 5000


def test_the_defaults_pass():
    for provider in ("aws", "gcp", "azure", "local"):
        _spec(provider)
