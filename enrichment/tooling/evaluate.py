"""`enrichment eval`: accuracy, macro-F1 and calibration of a provider on labelled records.

By default, leave-one-style-out over the shipped styled sets (enrichment.tooling.labelled):
each writing style is held out in turn and, for the local provider, scored by a model *and*
calibration fitted on the other styles only (train_local.fit, the recipe of the shipped
model); then the figures per style and over all held-out answers. `--drop FAMILY` leaves a
feature family out of the features (the ablation). `--data FILE` instead scores the provider
as shipped on every labelled record of FILE. ECE uses 10 equal-width confidence bins; the
reliability diagram is written as a PNG.

`--reviews TENANT` measures the AI against people instead: the tenant's reviews in the
database (DATABASE_URL), per provider, model and prompt version: raw and calibrated ECE,
accuracy with its interval, macro-F1, kappa and the threshold whose error rate's upper bound
is within the tenant's target (enrichment.reviews.report); `--json` prints them as one JSON
object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enrichment.core import db, tenants
from enrichment.core.errors import EnrichmentError
from enrichment.core.provider import Provider
from enrichment.core.settings import get_settings
from enrichment.core.taxonomy import Label
from enrichment.reviews import report as reviews_report
from enrichment.reviews.stats import BINS, ece, macro_f1, per_label, reliability_bins
from enrichment.tooling import labelled

PROGRESS_EVERY = 50  # records between progress lines on stderr


@dataclass(frozen=True)
class Outcome:
    """One evaluated record: truth, prediction (None when the provider failed), confidence."""

    external_id: str
    truth: Label
    predicted: Label | None
    confidence: float
    style: str = ""
    group: str = ""  # the local provider's calibration group, when known


# ---------------------------------------------------------------- metrics (pure)


def accuracy(truth: Sequence[str], predicted: Sequence[str | None]) -> float:
    """Share of exact matches; a failed call (None) counts as wrong. 0.0 for no records."""
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth) if truth else 0.0


# ---------------------------------------------------------------- running a provider


def run_one(provider: Provider, example: labelled.Example) -> Outcome:
    """analyze then classify; a typed provider failure is a wrong answer at confidence 0."""
    try:
        analysis = provider.analyze(example.ctx).result
        call = provider.classify(dataclasses.replace(example.ctx, analysis=analysis))
    except EnrichmentError as exc:
        print(f"{example.external_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return Outcome(example.external_id, example.label, None, 0.0, example.style)
    result = call.result
    return Outcome(
        example.external_id, example.label, result.label, result.confidence, example.style
    )


def run(provider: Provider, examples: Sequence[labelled.Example]) -> list[Outcome]:
    """Every example in order, with a progress line on stderr every PROGRESS_EVERY records."""
    outcomes, started = [], time.perf_counter()
    for i, example in enumerate(examples, start=1):
        outcomes.append(run_one(provider, example))
        if i % PROGRESS_EVERY == 0 or i == len(examples):
            elapsed_s = time.perf_counter() - started
            print(f"  {i}/{len(examples)} records, {elapsed_s:.1f}s", file=sys.stderr)
    return outcomes


# ---------------------------------------------------------------- report and figure


@dataclass(frozen=True)
class Report:
    """The figures of one run; `bins` as returned by reliability_bins."""

    records: int
    accuracy: float
    macro_f1: float
    ece: float
    failed: int
    per_label: dict[str, dict]
    bins: list[tuple[int, float, float]]


def summarize(outcomes: Sequence[Outcome], bins: int = BINS) -> Report:
    truth = [str(o.truth) for o in outcomes]
    predicted = [str(o.predicted) if o.predicted is not None else None for o in outcomes]
    correct = [t == p for t, p in zip(truth, predicted, strict=True)]
    confidences = [o.confidence for o in outcomes]
    return Report(
        records=len(outcomes),
        accuracy=accuracy(truth, predicted),
        macro_f1=macro_f1(truth, predicted),
        ece=ece(confidences, correct, bins),
        failed=sum(p is None for p in predicted),
        per_label=per_label(truth, predicted),
        bins=reliability_bins(confidences, correct, bins),
    )


def format_report(report: Report, *, provider: str, source: str) -> str:
    lines = [
        f"provider {provider} on {source}: {report.records} records ({report.failed} failed)",
        f"accuracy  {report.accuracy:.3f}",
        f"macro-F1  {report.macro_f1:.3f}",
        f"ECE       {report.ece:.3f}  ({len(report.bins)} equal-width confidence bins)",
        "",
        f"{'label':<22}{'precision':>10}{'recall':>8}{'F1':>7}{'support':>9}",
    ]
    for label, row in report.per_label.items():
        lines.append(
            f"{label:<22}{row['precision']:>10.3f}{row['recall']:>8.3f}{row['f1']:>7.3f}"
            f"{row['support']:>9d}"
        )
    lines += ["", "confidence bin   count  mean conf  accuracy"]
    width = 1 / len(report.bins)
    for i, (n, conf, acc) in enumerate(report.bins):
        if n:
            lo, hi = i * width, (i + 1) * width
            lines.append(f"[{lo:.1f}, {hi:.1f})     {n:>6d}  {conf:>9.3f}  {acc:>8.3f}")
    return "\n".join(lines)


def save_reliability_png(report: Report, path: Path, *, title: str) -> Path:
    """Accuracy per confidence bin as bars, the diagonal, and each bin's record count."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and no GUI toolkit to import
    import matplotlib.pyplot as plt

    width = 1 / len(report.bins)
    centers = [(i + 0.5) * width for i in range(len(report.bins))]
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=100)
    ax.bar(
        centers,
        [acc for _, _, acc in report.bins],
        width=width * 0.9,
        color="#4C72B0",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    for x, (n, _, acc) in zip(centers, report.bins, strict=True):
        if n:
            ax.text(x, acc + 0.015, str(n), ha="center", fontsize=8)
    ax.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


# ---------------------------------------------------------------- command


def make(provider: str) -> Provider:
    """The provider to evaluate; anthropic is configured from the environment as the workers
    are (ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ENRICHMENT_ANTHROPIC_*)."""
    from enrichment.core.settings import Settings
    from enrichment.providers import make_provider

    settings = dataclasses.replace(Settings.from_env(), ai_provider=provider)
    if provider == "anthropic" and not settings.anthropic_api_key:
        raise SystemExit(
            "eval --provider anthropic needs ANTHROPIC_API_KEY (and, for the fake "
            "server, ANTHROPIC_BASE_URL)"
        )
    return make_provider(settings)


# ---------------------------------------------------------------- leave one style out


def local_held_out(
    examples: Sequence[labelled.Example], style: str, *, families: frozenset[str], generated: int
) -> list[Outcome]:
    """`style`'s examples scored by a local model and calibration fitted on the other
    styles (and `generated` generator records) only."""
    from enrichment.providers import local
    from enrichment.tooling import train_local

    rest = [e for e in examples if e.style != style]
    extra = train_local.featurize(train_local.generated_examples(generated), families)
    fitted = train_local.fit(train_local.featurize(rest, families), extra)
    model = local.LinearModel.from_json(fitted["model"])
    cals = train_local.calibrations_from(fitted["calibration"]["groups"])
    out = []
    for e in examples:
        if e.style == style:
            d = local.decide(model, cals, local.read(e.ctx), families)
            out.append(Outcome(e.external_id, e.label, d.label, d.confidence, style, d.group))
    return out


def leave_one_style_out(
    examples: Sequence[labelled.Example],
    *,
    families: frozenset[str] | None = None,
    generated: int | None = None,
) -> list[Outcome]:
    """Every example, scored with its own style held out of the local model's fit."""
    from enrichment.providers.local import FAMILIES
    from enrichment.tooling.train_local import GENERATED_COUNT

    kept = frozenset(FAMILIES) if families is None else families
    count = GENERATED_COUNT if generated is None else generated
    outcomes = []
    for style in labelled.by_style(examples):
        started = time.perf_counter()
        outcomes += local_held_out(examples, style, families=kept, generated=count)
        print(f"  {style} held out: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return outcomes


def style_table(outcomes: Sequence[Outcome]) -> str:
    """Records, accuracy, macro-F1 and ECE per held-out style, overall, and the worst."""
    rows = {**{k: summarize(v) for k, v in _grouped(outcomes).items()}}
    lines = [f"{'held-out style':<16}{'records':>8}{'accuracy':>10}{'macro-F1':>10}{'ECE':>8}"]
    for name, r in [*rows.items(), ("overall", summarize(outcomes))]:
        lines.append(f"{name:<16}{r.records:>8}{r.accuracy:>10.3f}{r.macro_f1:>10.3f}{r.ece:>8.3f}")
    worst_acc = min(rows.items(), key=lambda kv: kv[1].accuracy)
    worst_ece = max(rows.items(), key=lambda kv: kv[1].ece)
    lines.append(
        f"worst style: accuracy {worst_acc[1].accuracy:.3f} ({worst_acc[0]}), "
        f"ECE {worst_ece[1].ece:.3f} ({worst_ece[0]})"
    )
    return "\n".join(lines)


def group_table(outcomes: Sequence[Outcome]) -> str:
    """Accuracy and mean confidence by what the answer rests on (features.calibration_group):
    structural evidence for it, evidence for another label, or words alone."""
    lines = [f"{'evidence group':<16}{'records':>8}{'accuracy':>10}{'mean conf':>10}{'ECE':>8}"]
    for name, group in sorted(_grouped(outcomes, "group").items()):
        r = summarize(group)
        mean = sum(o.confidence for o in group) / len(group)
        lines.append(f"{name:<16}{r.records:>8}{r.accuracy:>10.3f}{mean:>10.3f}{r.ece:>8.3f}")
    return "\n".join(lines)


def _grouped(outcomes: Sequence[Outcome], key: str = "style") -> dict[str, list[Outcome]]:
    out: dict[str, list[Outcome]] = {}
    for o in outcomes:
        out.setdefault(getattr(o, key), []).append(o)
    return out


def build_parser() -> argparse.ArgumentParser:
    from enrichment.providers.local import FAMILIES

    parser = argparse.ArgumentParser(prog="enrichment eval", description=__doc__)
    parser.add_argument("--provider", choices=("local", "anthropic"), default="local")
    parser.add_argument(
        "--data",
        type=Path,
        help="labelled JSONL to score the provider as shipped on (default: leave-one-style-out "
        "over the shipped styled sets)",
    )
    parser.add_argument(
        "--drop",
        action="append",
        choices=FAMILIES,
        default=[],
        help="leave this feature family out of the local model (repeatable; ablation)",
    )
    parser.add_argument("--out-dir", type=Path, default=Path("var/eval"))
    parser.add_argument(
        "--reviews",
        metavar="TENANT",
        help="instead of labelled data: the AI's labels against people's in TENANT's reviews "
        "(the database at DATABASE_URL; the options above are not used)",
    )
    parser.add_argument(
        "--json", action="store_true", help="with --reviews: the figures as one JSON object"
    )
    return parser


def reviews_main(tenant_name: str, *, as_json: bool = False) -> int:
    """Print how far the tenant's AI confidence can be trusted, from its reviews; exit 0
    (also with none yet). An unknown tenant raises UnknownTenant: the cli prints its one
    line and exits with EX_USAGE."""
    settings = get_settings()
    with db.session_factory(settings.database_url)() as session:
        tenant = tenants.require(session, tenant_name)
        found = reviews_report.measure(session, tenant, settings)
    if as_json:
        print(json.dumps(found.model_dump(mode="json")))
        return 0
    if not found.sources:
        print(
            f"no reviews yet for {tenant_name}: this compares the AI with people's labels, "
            f"given on the review page (/review/{tenant_name}) to escalations and the audit sample"
        )
        return 0
    print("\n".join(reviews_report.lines(found)))
    return 0


def _styles_main(args: argparse.Namespace) -> tuple[list[Outcome], str]:
    from enrichment.providers.local import FAMILIES

    examples = labelled.load_styles()
    if args.provider == "local":
        families = frozenset(FAMILIES) - set(args.drop)
        outcomes = leave_one_style_out(examples, families=families)
        dropped = f", without {'+'.join(args.drop)}" if args.drop else ""
        source = f"leave-one-style-out over {len(examples)} records{dropped}"
    else:
        outcomes, source = _shipped(args.provider, examples), "the shipped styled sets"
    print(style_table(outcomes) + "\n")
    if args.provider == "local":
        print(group_table(outcomes) + "\n")
    return outcomes, source


def _shipped(provider_name: str, examples: Sequence[labelled.Example]) -> list[Outcome]:
    provider = make(provider_name)
    try:
        return run(provider, examples)
    finally:
        provider.close()


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; exit 0, or 1 when there were no labelled records (with
    --reviews: 0 also when there are no reviews yet)."""
    args = build_parser().parse_args(argv)
    if args.reviews is not None:
        return reviews_main(args.reviews, as_json=args.json)
    if args.json:
        raise SystemExit("eval: --json is for --reviews TENANT (labelled data prints a table)")
    if args.drop and (args.data is not None or args.provider != "local"):
        raise SystemExit(
            "eval: --drop refits the local model, so it needs --provider local and no --data"
        )
    if args.data is None:
        outcomes, source = _styles_main(args)
        part = "styles" + "".join(f"-no-{f}" for f in args.drop)
    else:
        examples, refused = labelled.load_checked(args.data, args.data.stem)
        for line_no, reason in refused:  # as `enrichment ingest` would refuse them
            print(f"line {line_no} refused: {reason}", file=sys.stderr)
        if not examples:
            print(f"no labelled records in {args.data}", file=sys.stderr)
            return 1
        source = args.data.name + (f", {len(refused)} lines refused" if refused else "")
        outcomes, part = _shipped(args.provider, examples), args.data.stem
    report = summarize(outcomes)
    print(format_report(report, provider=args.provider, source=source))
    png = args.out_dir / f"reliability_{args.provider}_{part}.png"
    title = f"{args.provider}, {part} ({report.records} records), ECE {report.ece:.3f}"
    save_reliability_png(report, png, title=title)
    print(f"\nreliability diagram: {png}")
    return 0
