"""A tenant's experiment: its variants against people's reviews (experiments/report.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from enrichment.api.deps import TENANT_RESPONSES, AuthTenant, DbSession
from enrichment.core.tenant_settings import TenantSettings
from enrichment.experiments import report

router = APIRouter(responses=TENANT_RESPONSES)


@router.get("/api/enrichment/experiments/{tenant}")
def experiment_report(tenant: AuthTenant, s: DbSession) -> dict[str, Any]:
    """Per variant: reviewed records, accuracy with its Wilson 95 % interval, macro and
    per-label F1, Cohen's kappa against the reviewers, ECE, cost and latency per record;
    per pair: McNemar on the records both answered (a shadow against a live variant), or an
    unpaired interval comparison (two live variants), and the verdict: "better", "worse" or
    "not yet distinguishable"."""
    own = TenantSettings.parse(tenant.settings)
    return report.build(s, tenant.id, tenant.name, own.experiment).to_json()
