"""Cost arithmetic and the budget gate (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmcloud.stacks.cost import (
    CostLine,
    PriceSheet,
    budget_status,
    enforce_budget,
    estimate,
)
from llmcloud.stacks.errors import DeploymentError


def sheet(*lines: CostLine) -> PriceSheet:
    return PriceSheet(list(lines), price_date="2025-06-01", source="test table")


def test_totals_add_hourly_lines_at_min_and_max():
    cost = estimate(sheet(CostLine("gpu", "instance-hour", 1.5, 1, 4),
                          CostLine("alb", "hour", 0.03, 1, 1),
                          CostLine("requests", "1M requests", 3.5, 0, 0, hourly=False)))
    assert (cost["hourly_min"], cost["hourly_max"]) == (1.53, 6.03)
    assert cost["items"][2]["hourly_max"] == 0 and cost["items"][2]["unit_usd"] == 3.5
    assert (cost["price_date"], cost["source"], cost["currency"]) == (
        "2025-06-01", "test table", "USD")


@settings(deadline=None)  # a loaded CI machine must not fail a pure test
@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 50), st.integers(0, 50)),
                max_size=8))
def test_max_is_never_below_min(lines):
    cost = estimate(sheet(*(CostLine(str(i), "h", p, min(a, b), max(a, b))
                            for i, (p, a, b) in enumerate(lines))))
    assert cost["hourly_max"] >= cost["hourly_min"] - 1e-9


def test_budget_gate():
    cost = estimate(sheet(CostLine("gpu", "instance-hour", 1.25, 1, 2)))
    assert budget_status(cost, None) == {"max_hourly_usd": None, "exceeded": False}
    assert budget_status(cost, 2.5)["exceeded"] is False
    assert budget_status(cost, 2.0)["exceeded"] is True
    enforce_budget(cost, 3.0, "dev")
    with pytest.raises(DeploymentError) as info:
        enforce_budget(cost, 2.0, "dev")
    assert "may cost $2.50/h at max replicas, over the budget of $2.00/h" in info.value.message
    assert "$1.25/h at min replicas" in info.value.context and info.value.hint
