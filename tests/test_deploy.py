"""The Kubernetes examples under docs/deploy/ and the autoscaling signals they read.

Given the API on the test PostgreSQL with the broker read from the test Redis, when /metrics
is scraped, then every metric name the examples use is in the answer, the Redis variant's list
is a queue the answer reports, and enrichment_desired_workers follows the stated formula.
"""

import math
import re
from dataclasses import replace

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from enrichment.api import app, deps
from enrichment.core.due import FleetLoad
from enrichment.core.settings import Settings
from enrichment.metrics import prom
from enrichment.metrics.monitor import run_monitor
from tests.factories import make_record, make_tenant
from tests.fleet import ROOT

DEPLOY = ROOT / "docs" / "deploy"
METRIC = re.compile(r"\benrichment_[a-z0-9_]+")
AUTOSCALERS = ("ScaledObject", "HorizontalPodAutoscaler")


def documents() -> list[dict]:
    return [
        doc
        for path in sorted(DEPLOY.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def strings(node) -> list[str]:
    """Every string value in a parsed document; a ConfigMap's embedded YAML parses too."""
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    if isinstance(node, str) and "\n" in node:
        return [node, *strings(yaml.safe_load(node))]
    return [node] if isinstance(node, str) else []


def triggers(kind_of: str) -> list[dict]:
    return [
        t
        for d in documents()
        if d["kind"] == "ScaledObject"
        for t in d["spec"]["triggers"]
        if t["type"] == kind_of
    ]


@pytest.fixture
def scrape(client, factory, settings, redis_client):
    """/metrics' samples after a monitor pass over a tenant with 3 records due."""
    with factory.begin() as s:
        tenant = make_tenant(s, "k-3pl")
        for _ in range(3):
            make_record(s, tenant)
    run_monitor(factory, settings)
    app.dependency_overrides[deps.app_settings] = lambda: replace(settings, metrics_open=True)
    answer = client.get("/metrics")
    assert answer.status_code == 200
    families = text_string_to_metric_families(answer.text)
    return [sample for fam in families for sample in fam.samples]


def test_every_metric_the_examples_use_is_in_a_real_scrape(scrape):
    used = {m for doc in documents() for s in strings(doc) for m in METRIC.findall(s)}
    assert "enrichment_desired_workers" in used
    assert used <= {sample.name for sample in scrape}, used - {s.name for s in scrape}


def test_the_redis_variant_scales_on_a_queue_the_broker_reports(scrape):
    [redis] = triggers("redis")
    reported = {s.labels["queue"] for s in scrape if s.name == "enrichment_broker_queue_messages"}
    assert reported == {"celery", "control"}
    assert redis["metadata"]["listName"] == "celery"


def test_a_scrape_with_no_worker_recommends_one_for_the_backlog(scrape):
    values = {s.name: s.value for s in scrape if not s.labels}
    assert values["enrichment_broker_up"] == 1
    assert values["enrichment_fleet_backlog_records"] == 3
    assert values["enrichment_workers_online"] == 0
    assert values["enrichment_desired_workers"] == 1
    due = {s.labels["tenant"]: s.value for s in scrape if s.name == "enrichment_due_records"}
    assert due == {"k-3pl": 3}


def test_every_autoscaler_targets_the_worker_deployment_and_never_scales_to_zero():
    docs = documents()
    [worker] = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    scalers = [d for d in docs if d["kind"] in AUTOSCALERS]
    assert len(scalers) == 3
    for d in scalers:
        assert d["spec"]["scaleTargetRef"]["name"] == worker
        assert d["spec"].get("minReplicaCount", d["spec"].get("minReplicas")) == 1
    [prometheus] = triggers("prometheus")
    assert prometheus["metadata"]["threshold"] == "1"


def test_the_desired_workers_formula():
    # B 600 records, r 0.5 records/s per worker, T 600 s: ceil(600 / 300) = 2.
    assert prom.desired_workers(600, 0.5, 4, target_drain_s=600) == 2
    assert prom.desired_workers(601, 0.5, 4, target_drain_s=600) == 3
    # The AI rate limit keeps at most ceil(L / r) workers busy: L = 50 rpm / 3 calls a record.
    limit = 50 / 60 / 3
    capped = prom.desired_workers(100_000, 0.05, 2, target_drain_s=600, ai_records_per_s=limit)
    assert capped == math.ceil(limit / 0.05) == 6
    # Nothing due: one (the sweep and the monitor run on workers); no rate measured: as is.
    assert prom.desired_workers(0, 0.5, 7, target_drain_s=600) == 1
    assert prom.desired_workers(50, None, 3, target_drain_s=600) == 3
    assert prom.desired_workers(50, None, 0, target_drain_s=600) == 1


def test_the_per_worker_rate_and_the_ai_limit_come_from_what_was_measured(settings):
    work = FleetLoad(due=10, in_chains=5, completed_stages=360, window_s=60.0)
    assert work.backlog == 15
    assert prom.per_worker_records_per_s(work, 2) == 360 / 3 / 60 / 2
    assert prom.per_worker_records_per_s(work, 0) is None
    assert prom.ai_records_per_s(settings) is None  # the local provider calls no AI
    assert prom.ai_records_per_s(Settings(ai_provider="anthropic", ai_rpm=90)) == 0.5
    assert prom.ai_records_per_s(Settings(ai_provider="anthropic", ai_rpm=0)) is None


def test_with_the_broker_down_the_scrape_says_so_and_recommends_nothing(client, settings):
    app.dependency_overrides[deps.app_settings] = lambda: replace(
        settings, broker_url="redis://127.0.0.1:1/0", metrics_token="scrape-me"
    )
    answer = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    families = text_string_to_metric_families(answer.text)
    names = {s.name: s.value for f in families for s in f.samples}
    assert answer.status_code == 200 and names["enrichment_broker_up"] == 0
    assert "enrichment_fleet_backlog_records" in names
    assert "enrichment_desired_workers" not in names  # an autoscaler keeps what it has
