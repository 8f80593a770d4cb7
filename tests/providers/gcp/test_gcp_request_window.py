"""The interval GCP's count of a bake's traffic reads (`request_count.interval_start`): a
point of `https/request_count` holds the 60 s before its end, and a read takes the points
that end inside (start, end]; so the interval starts a minute or more into the bake, and
no request from before it (the rollout's last, the endpoint's version checks) counts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmcloud.providers.gcp.request_count import interval_start

SINCE = datetime(2026, 11, 30, 12, 0, 0, 500000, tzinfo=timezone.utc)


@pytest.mark.parametrize("seconds", [120, 121, 179.5, 600, 630, 3600])
def test_no_point_ending_in_the_bake_s_first_minute_is_read(seconds) -> None:
    until = SINCE + timedelta(seconds=seconds)
    start = interval_start(SINCE, until)
    assert start >= SINCE + timedelta(seconds=60)
    assert (until - start).total_seconds() % 60 == 0
    # and no more than a minute beyond that is left out
    assert start < SINCE + timedelta(seconds=120)


def test_a_bake_of_ten_and_a_half_minutes_reads_its_last_nine() -> None:
    until = SINCE + timedelta(seconds=630)
    assert until - interval_start(SINCE, until) == timedelta(minutes=9)
