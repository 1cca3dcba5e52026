"""The pruner's progress on `/metrics`, read from `prune_counts` at scrape time (the pruner
runs in a worker; the counters live in the database, like the snapshots)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.orm import Session, sessionmaker

from enrichment.core import prune_counts


class PruneCollector:
    """`enrichment_pruned_rows_total` and when each table last lost a row, per tenant."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory

    def collect(self) -> Iterator[Metric]:
        with self.factory() as session:
            rows = prune_counts.all_counts(session)
        labels = ["tenant", "table"]
        pruned = CounterMetricFamily(
            "enrichment_pruned_rows", "Rows the pruner removed past retention", labels=labels
        )
        last = GaugeMetricFamily(
            "enrichment_pruned_timestamp_seconds",
            "When the pruner last removed rows of the table",
            labels=labels,
        )
        for tenant, table, n, at in rows:
            pruned.add_metric([tenant, table], n)
            last.add_metric([tenant, table], at.timestamp())
        yield pruned
        yield last
