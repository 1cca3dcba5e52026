"""`enrichment experiment report TENANT`: the tenant's experiment variants against people's
reviews (enrichment/experiments/report.py), in words: better, worse or not yet
distinguishable."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from enrichment.core import db, experiments, tenants
from enrichment.core.settings import get_settings
from enrichment.core.tenant_settings import TenantSettings

if TYPE_CHECKING:  # the report pulls in scipy and statsmodels: imported when it runs
    from enrichment.experiments import report


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("experiment", help="compare a tenant's prompt and model variants")
    actions = p.add_subparsers(dest="action", required=True)
    r = actions.add_parser("report", help="each variant against people's reviews, and pairs")
    r.add_argument("tenant")
    r.add_argument("--json", action="store_true", help="one JSON object")
    r.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from enrichment.experiments import report

    settings = get_settings()
    with db.session_factory(settings.database_url)() as s:
        tenant = tenants.require(s, args.tenant)
        in_force = experiments.of_tenant(TenantSettings.parse(tenant.settings), settings)
        found = report.build(s, tenant.id, tenant.name, in_force)
    if args.json:
        print(json.dumps(found.to_json(), indent=2))
    else:
        print("\n".join(lines(found)))
    return 0


def lines(found: report.Report) -> list[str]:
    head = f"tenant {found.tenant}: experiment {found.experiment or '(none set)'}"
    if not found.variants:
        return [head, "no variant has answered a record of the audit sample yet"]
    out = [head, "on the audit sample (the latest review of each record; escalations left out), "
           "accuracy and ECE weighted by 1 / sampling probability", "", _HEADER]  # fmt: skip
    out += [_variant(v) for v in found.variants]
    if found.pairs:
        out += ["", "comparisons (candidate against baseline):"]
        out += [_pair(p) for p in found.pairs]
    return out


_HEADER = (
    f"{'variant':<18} {'kind':<6} {'audited':>8} {'accuracy (95% CI)':>22} {'macro F1':>8} "
    f"{'kappa':>6} {'ECE':>6} {'$/record':>9} {'s/record':>8}"
)


def _variant(v: report.VariantRow) -> str:
    acc = (
        f"{v.accuracy:.3f} [{v.accuracy_low:.3f}, {v.accuracy_high:.3f}]"
        if v.accuracy is not None
        else "-"
    )
    return (
        f"{v.name:<18} {v.kind:<6} {v.reviewed:>8} {acc:>22} {_f(v.macro_f1):>8} "
        f"{_f(v.kappa):>6} {_f(v.ece):>6} {_f(v.cost_per_record_usd, 5):>9} "
        f"{_f(v.latency_per_record_s, 2):>8}"
    )


def _pair(p: report.PairRow) -> str:
    if p.paired:
        detail = (
            f"on {p.paired} records both answered: {p.gains} only it got right, {p.losses} only "
            f"the baseline did; {p.test} p={p.pvalue:.3g}"
        )
    else:
        detail = f"no paired records; {p.test}"
    return f"  {p.candidate} vs {p.baseline}: {p.verdict.upper()} ({detail})"


def _f(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
