"""Cost estimates from a provider's price sheet, and the budget gate `plan` and `up` enforce.

Cloud-neutral: a provider turns a spec into priced lines (`Provider.prices(spec)`); this
module adds them up at the minimum and maximum replica counts and compares the maximum with
the spec's budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmcloud.stacks.errors import DeploymentError

#: hours in a month, as AWS, Google and Azure prorate monthly fees and price calculators
#: count a month of hourly ones
HOURS_PER_MONTH = 730


@dataclass(frozen=True)
class CostLine:
    """One priced item: `unit_usd` per unit-hour, times a quantity at min and max replicas.

    A usage-priced line (`hourly=False`, e.g. per million requests) is listed with its unit
    price but not added to the hourly totals, which cannot know the traffic.
    """

    name: str
    unit: str
    unit_usd: float
    quantity_min: float
    quantity_max: float
    hourly: bool = True
    note: str | None = None


@dataclass(frozen=True)
class PriceSheet:
    """A provider's priced lines for one spec, with the price table's date and source."""

    lines: list[CostLine]
    price_date: str
    source: str
    currency: str = "USD"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PriceTable:
    """A cloud's prices in one region, with where they came from: GPU instances per hour,
    and whether the region's prices are estimated from the table's base region."""

    region: str
    price_date: str
    source: str
    gpu_hourly: dict[str, float] = field(default_factory=dict)
    estimated: bool = False


def _usd(value: float) -> float:
    return round(value, 4)


def estimate(sheet: PriceSheet) -> dict[str, Any]:
    """The `cost` section of a plan: hourly totals at min and max replicas and their items."""
    items = []
    for line in sheet.lines:
        item = {
            "name": line.name, "unit": line.unit, "unit_usd": line.unit_usd,
            "quantity_min": line.quantity_min, "quantity_max": line.quantity_max,
            "hourly_min": _usd(line.unit_usd * line.quantity_min) if line.hourly else 0.0,
            "hourly_max": _usd(line.unit_usd * line.quantity_max) if line.hourly else 0.0,
        }
        if line.note:
            item["note"] = line.note
        items.append(item)
    return {
        "currency": sheet.currency,
        "hourly_min": _usd(sum(i["hourly_min"] for i in items)),
        "hourly_max": _usd(sum(i["hourly_max"] for i in items)),
        "items": items,
        "price_date": sheet.price_date,
        "source": sheet.source,
        "notes": list(sheet.notes),
    }


def budget_status(cost: dict[str, Any], max_hourly_usd: float | None) -> dict[str, Any]:
    """The `budget` section of a plan: the limit, and whether the maximum exceeds it."""
    exceeded = max_hourly_usd is not None and cost["hourly_max"] > max_hourly_usd
    return {"max_hourly_usd": max_hourly_usd, "exceeded": exceeded}


def budget_error(cost: dict[str, Any], max_hourly_usd: float, stack: str) -> DeploymentError:
    """The error `plan` and `up` exit 1 with when the maximum hourly cost is over budget."""
    return DeploymentError(
        f"stack '{stack}' may cost ${cost['hourly_max']:.2f}/h at max replicas, over the "
        f"budget of ${max_hourly_usd:.2f}/h",
        context=f"${cost['hourly_min']:.2f}/h at min replicas; prices of "
                f"{cost['price_date']} ({cost['source']})",
        hint="lower compute.max_replicas or pick a smaller compute.instance_type, or raise "
             "budget.max_hourly_usd (llmcloud plan --budget USD shows the effect)",
    )


def enforce_budget(cost: dict[str, Any], max_hourly_usd: float | None, stack: str) -> None:
    """Raise `DeploymentError` (exit 1) with both numbers when the budget is exceeded."""
    if budget_status(cost, max_hourly_usd)["exceeded"]:
        raise budget_error(cost, max_hourly_usd, stack)  # type: ignore[arg-type]
