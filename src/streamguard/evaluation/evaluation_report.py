"""The `streamguard evaluate` report: breakdowns, calibration and plots in one document
(report.md with relative image links, report.html with the images embedded)."""

from __future__ import annotations

import logging

from streamguard.evaluation.breakdown import breakdown, has_groups
from streamguard.evaluation.document import Section, fmt, write_report_files

log = logging.getLogger(__name__)

MAX_ROWS = 30  # groups shown in the report tables (breakdown.json has them all)


def sample_metadata(samples, ids) -> dict[str, list]:
    """project and cwe of each scored sample (in the order of `ids`), from a PreparedSplit's
    Arrow table; {} for splits without them (derived-feature tracks)."""
    table = getattr(samples, "table", None)
    if table is None or "idx" not in table.column_names:
        return {}
    row_of = {int(i): r for r, i in enumerate(table["idx"].to_pylist())}
    rows = [row_of.get(int(i)) for i in ids]
    out = {}
    for col in ("project", "cwe"):
        if col in table.column_names:
            values = table[col].to_pylist()
            out[col] = [None if r is None else values[r] for r in rows]
    return out


def _group_rows(rows: list[dict]) -> list[list[str]]:
    head = ["group", "samples", "vulnerable", "accuracy", "precision", "recall", "F1", "ROC-AUC", "mean P"]
    body = [[r["group"], fmt(r["n"]), fmt(r["positive"]), fmt(r["accuracy"]), fmt(r["precision"]), fmt(r["recall"]),
             fmt(r["f1"]), fmt(r["roc_auc"]), fmt(r["mean_prob"])] for r in rows[:MAX_ROWS]]
    return [head, *body]


def write_evaluation_report(out, *, metrics: dict, labels, probs, ids, samples, calibration_table: dict,
                            threshold: float | None) -> dict:
    from streamguard.evaluation.calibration import plot_reliability

    t = 0.5 if threshold is None else float(threshold)
    meta = sample_metadata(samples, ids)
    groups = {}
    for col, multi in (("project", False), ("cwe", True)):
        if col in meta and has_groups(meta[col]):
            groups[col] = breakdown(labels, probs, meta[col], threshold=t, multi=multi)
    out.write_json("breakdown.json", {"threshold": t, **groups,
                                      "note": "cwe: a sample with several CWEs counts in each"})
    out.write_json("calibration.json", calibration_table)
    plot_reliability(calibration_table, out.path("plots/reliability.png"))
    out.publish("plots/reliability.png")

    ci = metrics.get("confidence_intervals") or {}
    summary = [
        (f"Run {metrics.get('run')} ({metrics.get('track')} track, checkpoint {metrics.get('checkpoint')}) on "
        f"{metrics.get('data')}: {metrics['n_samples']} functions, {metrics['n_positive']} vulnerable."),
        (f"At the run's threshold {t:.2f} (picked on its validation split): F1 "
         f"{fmt(metrics.get('f1_at_external_threshold'))}, accuracy {fmt(metrics.get('accuracy_at_external_threshold'))}"
         if threshold is not None else "The run has no validation threshold; figures at 0.5:")
        + f"; ROC-AUC {fmt(metrics.get('roc_auc'))}, PR-AUC {fmt(metrics.get('pr_auc'))}.",
    ]
    ci_rows = [["metric", "estimate", "95% CI"]] + [
        [k, fmt(v["estimate"]), "n/a" if v["low"] is None else f"[{v['low']:.3f}, {v['high']:.3f}]"]
        for k, v in (ci.get("metrics") or {}).items()]
    ci_note = (f"{ci.get('method')}, {ci.get('n_boot')} replicates (seed {ci.get('seed')}), "
               f"{'stratified by class' if ci.get('stratified') else 'unstratified'}; threshold {t:.2f} held fixed.")
    cal = calibration_table
    cal_rows = [["bin", "samples", "mean P(vulnerable)", "observed share vulnerable"]] + [
        [f"{r['low']:.1f}–{r['high']:.1f}", fmt(r["n"]), fmt(r["confidence"]), fmt(r["observed"])] for r in cal["table"]]
    sections = [
        Section("Summary", summary),
        Section("Confidence intervals", [ci_note], table=ci_rows),
        Section("Calibration", [(f"ECE {cal['ece']:.3f} (equal-width bins of P(vulnerable), weighted by size), "
                                f"MCE {cal['mce']:.3f}, Brier score {cal['brier']:.3f}.")],
                table=cal_rows, images=[("reliability diagram", "plots/reliability.png")]),
    ]
    for col, rows in groups.items():
        title = {"project": "Per project", "cwe": "Per CWE"}[col]
        note = [f"{len(rows)} group{'s' if len(rows) != 1 else ''}" + (f", the {MAX_ROWS} largest shown (all in breakdown.json)"
                                         if len(rows) > MAX_ROWS else "")
                + f"; scored at threshold {t:.2f}."]
        if col == "cwe":
            note.append("A function with several CWEs counts in each; '(none)' collects functions without a CWE.")
        sections.append(Section(title, note, table=_group_rows(rows)))
    if not groups:
        sections.append(Section("Breakdown", ["The data carries no project or CWE labels to break the scores down by."]))
    plots = [("ROC", "plots/roc.png"), ("precision-recall", "plots/pr.png"), ("threshold sweep", "plots/threshold_sweep.png"),
             ("confusion matrix at 0.5", "plots/confusion_matrix_0_5.png"),
             ("confusion matrix at the best test threshold", "plots/confusion_matrix_best.png")]
    sections.append(Section("Plots", images=plots))
    _md, page = write_report_files(out, "report", "Evaluation report", sections)
    log.info("report: %s", out.display(page))
    return groups
