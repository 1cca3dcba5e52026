"""Experiments on prompts and models (issue 24): the sticky split, shadows that never act,
the report against people, and the cascade, on real PostgreSQL (and the fake Anthropic)."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
from sqlalchemy import select

from enrichment.core.experiments import CASCADE_LOCAL, parse
from enrichment.core.models import (
    EnrichmentAttempt,
    ExceptionRecord,
    Order,
    OutboxEvent,
    ResolutionAction,
    Review,
)
from enrichment.core.pipeline import run_stage
from enrichment.core.provider import RecordContext
from enrichment.core.schemas import Classification
from enrichment.core.selection import claim_due
from enrichment.core.settings import Settings, get_settings
from enrichment.core.shadow_answers import ShadowAnswer
from enrichment.core.taxonomy import Label
from enrichment.experiments import report
from enrichment.experiments.cascade import Gates
from enrichment.experiments.router import ExperimentProvider, live_variant
from enrichment.providers.anthropic import AnthropicProvider
from enrichment.providers.local import LocalProvider
from enrichment.tooling.fake_anthropic import FakeAnthropic
from tests.factories import make_record, make_tenant
from tests.scripted import ScriptedProvider

CHAIN = ("order_analysis", "classification", "automation")
KEY = "sk-test-experiments"
EXPERIMENT = {
    "name": "bigger-model",
    "variants": [
        {"name": "control", "weight": 1},
        {"name": "challenger", "model": "challenger-1", "shadow": True, "shadow_rate": 1.0},
    ],
}


class VariantScripted(ScriptedProvider):
    """The scripted provider, whose model 'challenger-1' says LOST... a different label."""

    def __init__(self, model: str = "script-1"):
        super().__init__()
        self.model = model

    def for_variant(self, prompt_version, model):
        return self if model in (None, self.model) else VariantScripted(model)

    def classify(self, ctx):
        call = super().classify(ctx)
        if self.model == "script-1":
            return call
        other = Classification(label=Label.DELIVERY_DELAY, confidence=0.81, notes="late")
        return replace(call, result=other, model=self.model)


def enrich(factory, provider, settings, record_id):
    """The record's chain, run here as the Celery chain runs it (claiming what is due)."""
    with factory.begin() as s:
        _TOKENS.update({c.record_id: c.lease_token for c in claim_due(s, settings)})
    for stage in CHAIN:
        out = run_stage(
            factory, provider, settings, stage=stage, record_id=record_id,
            lease_token=_TOKENS[record_id],
        )  # fmt: skip
        if out.kind != "continue":
            return out
    return out


_TOKENS: dict[int, str] = {}  # record id -> its lease token: one claim takes all that are due


def new_record(factory, settings_json, **kw):
    with factory.begin() as s:
        tenant = make_tenant(s, settings=settings_json)
        return make_record(s, tenant, severity="low", **kw).id


def test_a_shadow_variants_answer_never_reaches_the_record_its_actions_or_events(factory, settings):
    # Given a tenant whose experiment has a live control and a shadow on another model
    record_id = new_record(factory, {"experiment": EXPERIMENT})
    # When the record is enriched
    out = enrich(factory, ExperimentProvider(VariantScripted()), settings, record_id)
    # Then the record, its actions and its events are the live answer's
    assert out.kind == "done"
    with factory() as s:
        rec = s.get(ExceptionRecord, record_id)
        assert rec.ai_label == "DAMAGED_PACKAGE" and rec.ai_confidence == 0.92
        assert rec.ai_source["classification"]["variant"] == "control"
        assert rec.ai_source["classification"]["model"] == "script-1"
        actions = s.scalars(
            select(ResolutionAction.action).where(ResolutionAction.record_id == record_id)
        ).all()
        assert sorted(actions) == ["OPEN_CARRIER_CLAIM", "RESHIP_ORDER"]
        events = s.scalars(select(OutboxEvent).where(OutboxEvent.record_id == record_id)).all()
        assert events and "DELIVERY_DELAY" not in json.dumps([e.data for e in events])
        assert {e.data.get("label") for e in events} == {"DAMAGED_PACKAGE"}
        # and the shadow's different answer is kept beside it
        [shadow] = s.scalars(select(ShadowAnswer).where(ShadowAnswer.record_id == record_id))
        assert (shadow.variant, shadow.label, shadow.confidence) == (
            "challenger", "DELIVERY_DELAY", 0.81,
        )  # fmt: skip
        assert (shadow.stage, shadow.model, shadow.cost_usd) == (
            "classification", "challenger-1", 0.0001,
        )  # fmt: skip
        # and every decision's attempt row names its variant
        details = s.scalars(
            select(EnrichmentAttempt.detail).where(EnrichmentAttempt.record_id == record_id)
        ).all()
        assert details == [{"variant": "control"}] * 3


def test_the_sticky_split_gives_a_record_the_same_variant_in_every_process():
    experiment = parse({"name": "e7", "variants": [
        {"name": "a", "weight": 3}, {"name": "b", "weight": 1},
    ]})  # fmt: skip
    here = [live_variant(i, experiment).name for i in range(1, 2001)]
    code = (
        "from enrichment.core.experiments import parse;"
        "from enrichment.experiments.router import live_variant;"
        "e = parse({'name': 'e7', 'variants': [{'name': 'a', 'weight': 3},"
        " {'name': 'b', 'weight': 1}]});"
        "print(''.join(live_variant(i, e).name for i in range(1, 2001)))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert "".join(here) == there
    assert 0.70 < here.count("a") / len(here) < 0.80  # the weights: 3 to 1


def test_a_records_variant_is_the_same_across_runs_of_the_pipeline(factory, settings):
    exp = {"name": "split", "variants": [{"name": "x"}, {"name": "y"}]}
    with factory.begin() as s:
        tenant = make_tenant(s, settings={"experiment": exp})
        ids = [make_record(s, tenant, severity="low").id for _ in range(6)]
    provider = ExperimentProvider(VariantScripted())
    first = {}
    for record_id in ids:
        enrich(factory, provider, settings, record_id)
        with factory() as s:
            first[record_id] = s.get(ExceptionRecord, record_id).ai_source
    expected = {i: live_variant(i, parse(exp)).name for i in ids}
    assert {i: src["classification"]["variant"] for i, src in first.items()} == expected
    assert all(len({v["variant"] for v in src.values()}) == 1 for src in first.values())


FLEET = {"name": "fleet-split", "variants": [{"name": "x"}, {"name": "y"}]}


def test_a_tenant_without_its_own_experiment_runs_the_fleets_and_its_own_replaces_it(
    factory, settings, cli, monkeypatch
):
    # Given ENRICHMENT_EXPERIMENT, a tenant without an experiment and one with its own
    fleet = replace(settings, experiment=parse(FLEET))
    own = {"name": "own", "variants": [{"name": "solo"}]}
    with factory.begin() as s:
        plain = make_tenant(s, "plain-3pl", settings={})
        mine = make_tenant(s, "mine-3pl", settings={"experiment": own})
        plain_ids = [make_record(s, plain, severity="low").id for _ in range(8)]
        mine_ids = [make_record(s, mine, severity="low").id for _ in range(4)]
    # When their records are enriched
    provider = ExperimentProvider(VariantScripted())
    for record_id in plain_ids + mine_ids:
        enrich(factory, provider, fleet, record_id)
    with factory() as s:
        variant = {i: s.get(ExceptionRecord, i).ai_source["classification"]["variant"]
                   for i in plain_ids + mine_ids}  # fmt: skip
    # Then the plain tenant's records follow the fleet's sticky split, both of its variants
    expected = {i: live_variant(i, parse(FLEET)).name for i in plain_ids}
    assert {i: variant[i] for i in plain_ids} == expected
    assert set(expected.values()) == {"x", "y"}
    # and the other tenant's follow its own experiment, whole
    assert {variant[i] for i in mine_ids} == {"solo"}
    # and the report names the experiment each tenant runs
    monkeypatch.setenv("ENRICHMENT_EXPERIMENT", json.dumps(FLEET))
    get_settings.cache_clear()  # read again by the command, as a process starting
    assert cli("experiment", "report", "plain-3pl")[1].startswith(
        "tenant plain-3pl: experiment fleet-split\n"
    )
    assert cli("experiment", "report", "mine-3pl")[1].startswith(
        "tenant mine-3pl: experiment own\n"
    )


@pytest.mark.parametrize(
    "bad, says",
    [
        ("{oops", "ENRICHMENT_EXPERIMENT is not JSON"),
        ('{"name": "e1"}', "ENRICHMENT_EXPERIMENT: the experiment needs 'variants'"),
        ('{"name": "e1", "variants": [{"name": "a", "shadow": true}]}',
         "ENRICHMENT_EXPERIMENT: the experiment needs at least one live variant"),
    ],
)  # fmt: skip
def test_a_bad_fleet_experiment_fails_at_start_up_in_one_line(bad, says, factory, cli, monkeypatch):
    monkeypatch.setenv("ENRICHMENT_EXPERIMENT", bad)
    get_settings.cache_clear()
    code, out, err = cli("experiment", "report", "anyone")
    assert (code, out) == (78, "")  # EX_CONFIG
    assert says in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def fake():
    with FakeAnthropic(retry_after_s=0.01, api_key=KEY) as server:
        yield server


def anthropic(fake, **changes) -> AnthropicProvider:
    options = {"anthropic_api_key": KEY, "anthropic_base_url": fake.base_url,
               "anthropic_max_retries": 0, "ai_timeout_s": 5.0, **changes}  # fmt: skip
    return AnthropicProvider(Settings(**options))


def test_variants_choose_the_fake_anthropics_model_and_prompt_and_the_local_prompt(
    factory, settings, fake
):
    exp = {"name": "models", "variants": [
        {"name": "sonnet-v1", "model": "claude-sonnet-4-5", "prompt_version": "v1"},
    ]}  # fmt: skip
    # The fake Anthropic: the variant's model is the one called, its prompt the one sent
    record_id = new_record(factory, {"experiment": exp})
    llm = anthropic(fake)
    assert enrich(factory, ExperimentProvider(llm), settings, record_id).kind == "done"
    assert {r["body"]["model"] for r in fake.requests} == {"claude-sonnet-4-5"}
    with factory() as s:
        source = s.get(ExceptionRecord, record_id).ai_source["classification"]
    assert source == {"provider": "anthropic", "model": "claude-sonnet-4-5",
                      "prompt_version": "v1", "variant": "sonnet-v1"}  # fmt: skip
    llm.close()
    # The local provider: one model (the variant's ignored), the prompt version reported
    with factory.begin() as s:
        other = make_tenant(s, name="local-3pl", settings={"experiment": exp})
        local_id = make_record(s, other, severity="low").id
    enrich(factory, ExperimentProvider(LocalProvider()), settings, local_id)
    with factory() as s:
        source = s.get(ExceptionRecord, local_id).ai_source["classification"]
    assert (source["provider"], source["prompt_version"], source["variant"]) == (
        "local", "v1", "sonnet-v1",
    )  # fmt: skip


def seed_experiment(s, tenant, n=40, control_right=30, challenger_gains=8):
    """n reviewed records answered by 'control' (right on control_right) and by the shadow
    'challenger' (right wherever control is, and on challenger_gains more)."""
    for i in range(n):
        truth = "DAMAGED_PACKAGE"
        control = truth if i < control_right else "OTHER"
        challenger = truth if i < control_right + challenger_gains else "OTHER"
        rec = make_record(s, tenant, ai_label=control, ai_confidence=0.9)
        s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="ann",
                     label=truth, actions=[], ai_label=control, ai_confidence=0.9,
                     ai_source={"provider": "scripted", "variant": "control"}))  # fmt: skip
        s.add(ShadowAnswer(tenant_id=tenant.id, record_id=rec.id, stage="classification",
                           variant="challenger", provider="scripted", label=challenger,
                           confidence=0.8, cost_usd=0.002, latency_s=0.5))  # fmt: skip
    s.flush()


def test_the_report_scores_each_variant_against_people_and_says_which_is_better(factory, cli):
    with factory.begin() as s:
        tenant = make_tenant(s, name="acme", settings={"experiment": EXPERIMENT})
        seed_experiment(s, tenant)
        found = report.build(s, tenant.id, "acme", parse(EXPERIMENT))
    control, challenger = found.variants
    assert (control.name, control.reviewed, control.accuracy) == ("control", 40, 0.75)
    assert (control.accuracy_low, control.accuracy_high) == pytest.approx(
        (0.5980, 0.8581), abs=1e-3
    )
    assert challenger.accuracy == 38 / 40
    assert control.ece == pytest.approx(0.15)  # all at 0.9, right 75 %
    assert challenger.ece == pytest.approx(0.15)  # all at 0.8, right 95 %
    assert challenger.cost_per_record_usd == pytest.approx(0.002)
    # only two labels seen, one of them never the truth: F1 of DAMAGED_PACKAGE and of OTHER
    assert control.macro_f1 == pytest.approx((2 * 30 / 70 + 0) / 2)
    [pair] = found.pairs
    assert (pair.baseline, pair.candidate, pair.paired) == ("control", "challenger", 40)
    assert (pair.gains, pair.losses, pair.test) == (8, 0, "mcnemar exact")
    assert pair.pvalue == pytest.approx(2 * 0.5**8)
    assert pair.verdict == "better"
    code, out, _ = cli("experiment", "report", "acme")
    assert code == 0
    assert "challenger vs control: BETTER (on 40 records both answered" in out


def test_the_report_weights_the_audit_sample_and_leaves_escalations_out(factory):
    # Given control's 40 audit reviews, 10 of them (the wrong ones) drawn at probability 0.5:
    # each of those stands for 2 records; and 20 escalations, all wrong
    with factory.begin() as s:
        tenant = make_tenant(s, name="acme", settings={"experiment": EXPERIMENT})
        seed_experiment(s, tenant)
        for r in s.scalars(select(Review).where(Review.ai_label == "OTHER")):
            r.sampling_probability = 0.5
        for _ in range(20):
            rec = make_record(s, tenant, ai_label="OTHER", ai_confidence=0.55)
            s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="escalation",
                         reviewer="ann", label="DAMAGED_PACKAGE", actions=[], ai_label="OTHER",
                         ai_confidence=0.55, ai_source={"variant": "control"}))  # fmt: skip
        s.flush()
        control, _ = report.build(s, tenant.id, "acme", parse(EXPERIMENT)).variants

    # Then control is scored on its 40 audit reviews, right on 30 of 30 + 2 x 10 weighted
    assert control.reviewed == 40
    assert control.accuracy == pytest.approx(30 / 50)
    assert control.ece == pytest.approx(0.3)  # all at 0.9, right 60 %


def test_too_few_discordant_records_are_not_yet_distinguishable(factory, client):
    from enrichment.core import tenants

    with factory.begin() as s:
        tenant, key = tenants.create_tenant(s, "acme")
        tenant.settings = {"experiment": EXPERIMENT}
        seed_experiment(s, tenant, n=20, control_right=15, challenger_gains=2)
    r = client.get("/api/enrichment/experiments/acme",
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 200
    [pair] = r.json()["pairs"]
    assert (pair["gains"], pair["losses"], pair["verdict"]) == (2, 0, "not yet distinguishable")


def seed_local_reviews(s, tenant, high: float, low: float):
    """70 audit reviews of the local model: 50 right at `high`, 20 at `low` (half right)."""
    for i in range(70):
        conf, right = (high, True) if i < 50 else (low, i % 2 == 0)
        rec = make_record(s, tenant)
        s.add(ShadowAnswer(tenant_id=tenant.id, record_id=rec.id, stage="classification",
                           variant=CASCADE_LOCAL, provider="local", label="DAMAGED_PACKAGE",
                           confidence=conf, cost_usd=0.0, latency_s=0.01))  # fmt: skip
        s.add(Review(tenant_id=tenant.id, record_id=rec.id, kind="audit", reviewer="ann",
                     label="DAMAGED_PACKAGE" if right else "OTHER", actions=[],
                     ai_label="DAMAGED_PACKAGE", ai_confidence=0.9,
                     ai_source={"provider": "anthropic"}, sampling_probability=1.0))  # fmt: skip


def test_the_cascade_lets_the_local_model_answer_alone_only_when_it_clears_the_budget(
    factory, settings, fake
):
    # Given two records the local model is sure of and unsure of
    with factory.begin() as s:
        tenant = make_tenant(s, settings={"cascade": True, "max_auto_error_rate": 0.1})
        sure = make_record(s, tenant, severity="low")
        unsure = make_record(
            s, tenant, severity="low", reason_code="OTHER", notes="customer called, see ticket",
            events=[],
        )  # fmt: skip
        sure_id, unsure_id = sure.id, unsure.id
    local = LocalProvider()
    confidence = {}
    for record_id in (sure_id, unsure_id):
        with factory() as s:
            confidence[record_id] = _local_confidence(s, local, record_id)
    assert confidence[sure_id] > confidence[unsure_id]
    # and audit reviews saying the local model is right at the first and not at the second
    with factory.begin() as s:
        seed_local_reviews(
            s, s.get(type(tenant), tenant.id), confidence[sure_id], confidence[unsure_id]
        )
    llm = anthropic(fake)
    provider = ExperimentProvider(llm, Gates(factory, settings))
    # When both are enriched
    for record_id in (sure_id, unsure_id):
        enrich(factory, provider, settings, record_id)
    llm.close()
    # Then the sure one was answered by the local model alone, the other by the LLM
    with factory() as s:
        sure_src = s.get(ExceptionRecord, sure_id).ai_source["classification"]
        unsure_src = s.get(ExceptionRecord, unsure_id).ai_source["classification"]
        kept = s.scalars(select(ShadowAnswer.record_id).where(
            ShadowAnswer.variant == CASCADE_LOCAL, ShadowAnswer.record_id.in_([sure_id, unsure_id])
        )).all()  # fmt: skip
    assert (sure_src["provider"], sure_src["cascade"]) == ("local", "local")
    assert (unsure_src["provider"], unsure_src["cascade"]) == ("anthropic", "llm")
    tools = [r["body"]["tool_choice"]["name"] for r in fake.requests]
    assert sum("classif" in t for t in tools) == 1  # the LLM classified one record only
    assert sorted(kept) == sorted([sure_id, unsure_id])  # the local answer kept for both


def _local_confidence(s, local, record_id) -> float:
    """What the local model says of the record, from the fields a stage gives it."""
    rec = s.get(ExceptionRecord, record_id)
    order = s.get(Order, rec.order_id)
    ctx = RecordContext(tenant="t", record_id=rec.id, attempt=0, reason_code=rec.reason_code,
                        severity=rec.severity, notes=rec.notes, order=order.payload,
                        events=order.events)  # fmt: skip
    return local.classify(ctx).result.confidence
