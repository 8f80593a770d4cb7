"""`plan`'s cost table for a person says what the JSON says: the region's price note, the
unit prices, which items are billed per use (not free), the price table's date and source,
and the month the hourly totals come to."""

from __future__ import annotations

import pytest

from llmcloud.cli.plan_command import render_plan


def _document() -> dict:
    return {
        "provider": "aws", "stack": "dev", "resources": [], "checks": [],
        "cost": {
            "currency": "USD", "hourly_min": 1.0159, "hourly_max": 1.8426,
            "items": [
                {"name": "GPU servers (g6.xlarge, on-demand)", "unit": "instance-hour",
                 "unit_usd": 0.8048, "quantity_min": 1, "quantity_max": 2,
                 "hourly_min": 0.8048, "hourly_max": 1.6096},
                {"name": "Secret Manager", "unit": "version-hour", "unit_usd": 8.2e-05,
                 "quantity_min": 1, "quantity_max": 1, "hourly_min": 0.0001,
                 "hourly_max": 0.0001},
                {"name": "API Gateway REST requests", "unit": "1M requests", "unit_usd": 3.5,
                 "quantity_min": 0, "quantity_max": 0, "hourly_min": 0.0, "hourly_max": 0.0,
                 "note": "billed per request; not in the hourly total"},
            ],
            "price_date": "2025-06-01", "source": "AWS public price list",
            "notes": ["eu-west-1 is priced as us-east-1; check the region's prices"],
        },
        "budget": {"max_hourly_usd": None, "exceeded": False},
    }


@pytest.fixture
def printed(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    render_plan(_document())
    return capsys.readouterr().out


def test_a_region_priced_as_the_base_says_so(printed: str) -> None:
    # the note was only in --json: a person saw eu-west-1 at us-east-1's prices unwarned
    assert "note: eu-west-1 is priced as us-east-1; check the region's prices" in printed


def test_the_price_table_date_and_source_are_shown(printed: str) -> None:
    assert "prices of 2025-06-01 (AWS public price list)" in printed


def test_items_billed_per_use_show_their_price_not_zero(printed: str) -> None:
    line = next(row for row in printed.splitlines() if "API Gateway REST requests" in row
                and "note" not in row and ":" not in row)
    assert "3.5/1M requests" in line and "per use" in line and "0.000" not in line
    assert "billed per request; not in the hourly total" in printed


def test_unit_prices_are_written_without_an_exponent(printed: str) -> None:
    assert "0.8048/instance-hour" in printed and "0.000082/version-hour" in printed
    assert "e-05" not in printed


def test_the_totals_are_also_given_a_month(printed: str) -> None:
    line = next(row for row in printed.splitlines() if "a month" in row)
    # 1.0159 * 730 = 741.6, 1.8426 * 730 = 1345.1
    assert "730 hours" in line and "742" in line and "1,345" in line
