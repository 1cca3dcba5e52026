"""The order figures people read (orders as records, issue 25): the orders watched and
analysed, the problems the order analysis raised, how many of them a tenant's own exception
later confirmed (attached to), and the lead time: how long before the tenant's own exception
the fleet had raised it. One model and its words, used by the health route and the report
(`Health.orders`), `enrichment status` and `report`, and the report page's cards.

The figures are the monitor's (metrics/monitor.py: the counts all time, the lead time the
median of the latest 100 attachments); a tenant that never sent an order has none to show.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from enrichment.core.text import duration, plural
from enrichment.metrics.monitor import Snapshot
from enrichment.metrics.passes import LEAD_TIME_SAMPLE


class OrderFigures(BaseModel):
    """Watched orders and what their analysis raised; counts all time."""

    orders_watched: int = Field(description="open watches: orders not delivered or cancelled")
    orders_analysed: int = Field(description="watched orders analysed at least once")
    problems_raised: int = Field(description="exceptions the order analysis raised")
    problems_attached: int = Field(
        description="raised exceptions a tenant's own exception later attached to"
    )
    lead_time_median_s: float | None = Field(
        description=f"median seconds from raising a problem to the tenant's own exception for "
        f"it, over the latest {LEAD_TIME_SAMPLE} attachments; null before any"
    )


def of(snap: Snapshot) -> OrderFigures | None:
    """The snapshot's order figures; None when the tenant has no order and nothing raised."""
    figures = OrderFigures(
        orders_watched=snap.orders_watched,
        orders_analysed=snap.orders_analysed,
        problems_raised=snap.problems_raised,
        problems_attached=snap.problems_attached,
        lead_time_median_s=snap.lead_time_median_s,
    )
    seen = figures.orders_watched + figures.orders_analysed + figures.problems_raised
    return figures if seen else None


def _attached(f: OrderFigures) -> str:
    """The attachments the median rests on: '2 attached', 'latest 100 attached'."""
    latest = min(f.problems_attached, LEAD_TIME_SAMPLE)
    return f"latest {latest} attached" if f.problems_attached > latest else f"{latest} attached"


def lead_time_words(f: OrderFigures) -> str:
    """'median 3.2 h ahead of your exception (2 attached)', or why there is none yet."""
    if f.lead_time_median_s is None:
        return "no tenant exception attached yet"
    return f"median {duration(f.lead_time_median_s)} ahead of your exception ({_attached(f)})"


def words(f: OrderFigures) -> list[tuple[str, str]]:
    """The figures as (name, words) pairs for a terminal."""
    raised = plural(f.problems_raised, "problem")
    return [
        ("orders watched", f"{f.orders_watched:,} open, {f.orders_analysed:,} analysed"),
        ("problems raised", f"{raised}, {f.problems_attached:,} confirmed by your exceptions"),
        ("lead time", lead_time_words(f)),
    ]


def cards(f: OrderFigures | None) -> list[tuple[str, str, str, str]]:
    """The report page's cards (label, value, hint, threshold key): none without orders."""
    if f is None:
        return []
    if f.lead_time_median_s is None:
        ahead, hint = "no data", lead_time_words(f)
    else:
        ahead = duration(f.lead_time_median_s)
        hint = f"median ahead of your exception, {_attached(f)}"
    return [
        ("Orders watched", f"{f.orders_watched:,}", f"open; {f.orders_analysed:,} analysed", ""),
        ("Problems raised", f"{f.problems_raised:,}",
         f"by the order analysis; {f.problems_attached:,} confirmed by your exceptions", ""),
        ("Lead time", ahead, hint, ""),
    ]  # fmt: skip
