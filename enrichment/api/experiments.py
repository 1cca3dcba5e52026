"""A tenant's experiment: its variants against people's reviews (experiments/report.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from enrichment.api.deps import TENANT_RESPONSES, AppSettings, AuthTenant, DbSession
from enrichment.core import experiments
from enrichment.core.tenant_settings import TenantSettings
from enrichment.experiments import report

router = APIRouter(responses=TENANT_RESPONSES)


@router.get("/api/enrichment/experiments/{tenant}")
def experiment_report(tenant: AuthTenant, s: DbSession, settings: AppSettings) -> dict[str, Any]:
    """Per variant, on the audit sample (escalations left out, each review weighted by 1 / its
    sampling probability): audited records, accuracy with its Wilson 95 % interval, macro and
    per-label F1, Cohen's kappa against the reviewers, ECE, cost and latency per record;
    per pair: McNemar on the records both answered (a shadow against a live variant), or an
    unpaired interval comparison (two live variants), and the verdict: "better", "worse" or
    "not yet distinguishable"."""
    in_force = experiments.of_tenant(TenantSettings.parse(tenant.settings), settings)
    return report.build(s, tenant.id, tenant.name, in_force).to_json()
