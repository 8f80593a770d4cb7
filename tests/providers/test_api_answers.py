"""Reading clouds' answers: the times they write."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from llmcloud.providers import api_answers
from llmcloud.providers.api_answers import api_time
from tests.providers.fakes import Python310Datetime

UTC = timezone.utc


@pytest.mark.parametrize(("text", "expected"), [
    # Resource Manager: seven fractional digits (the scale set upgrade docs' example)
    ("2018-07-24T17:46:06.1248429+00:00", datetime(2018, 7, 24, 17, 46, 6, 124842, UTC)),
    ("2026-11-30T12:01:10.1234567Z", datetime(2026, 11, 30, 12, 1, 10, 123456, UTC)),
    ("2026-11-30T12:01:10Z", datetime(2026, 11, 30, 12, 1, 10, tzinfo=UTC)),
    # Compute Engine: milliseconds and the zone's offset
    ("2026-11-30T04:01:10.123-08:00",
     datetime(2026, 11, 30, 4, 1, 10, 123000, timezone(timedelta(hours=-8)))),
    ("2026-11-30T12:01:10.5", datetime(2026, 11, 30, 12, 1, 10, 500000, UTC)),  # no zone: UTC
    ("", None), (None, None), ("yesterday", None), ("2026-13-40T00:00:00Z", None),
])
def test_cloud_times_are_read_on_every_supported_python(monkeypatch, text, expected):
    monkeypatch.setattr(api_answers, "datetime", Python310Datetime)
    assert api_time(text) == expected
    if expected is not None:  # comparable with the callers' aware times
        assert api_time(text).tzinfo is not None
