"""`streamguard ensemble`: average the probabilities of several runs (seeds of one config,
or the trials of a sweep) and score the average like one run.

Members must have scored the same validation and test samples (same ids, same labels);
the ensemble's probability of a sample is the mean of the members' (soft voting). As in
training, the threshold is picked on the averaged *validation* probabilities (the best F1
over 0.30..0.70) and applied to the averaged test probabilities, so
`ensemble_metrics.json` has exactly the keys of a run's `metrics.json` (plus the extra
sections below).

Writes into the output directory (local or s3://):

    ensemble_metrics.json       metrics.json schema + members, validation, confidence intervals, calibration
    ensemble_predictions.json   predictions.json format (test and valid), so `compare` reads it like a run
    members.json / .csv / .md   per-member metrics, their mean +- std, the ensemble and the gain
    report.md / report.html     the tables and the plots
    plots/*.png                 ROC, PR, confusion matrices, threshold sweep, reliability, members vs ensemble
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass

import numpy as np

from streamguard.errors import DataError, StorageError
from streamguard.evaluation.predictions import (
    Predictions,
    Scored,
    check_aligned,
    load_predictions,
)
from streamguard.storage import join, open_storage
from streamguard.train.evaluate import compute_metrics

log = logging.getLogger(__name__)

# Rows of the members table: (label, key in the metrics of a model scored like a run).
TABLE_METRICS = (
    ("F1 at validation threshold", "f1_at_external_threshold"),
    ("accuracy at validation threshold", "accuracy_at_external_threshold"),
    ("precision at validation threshold", "precision_at_external_threshold"),
    ("recall at validation threshold", "recall_at_external_threshold"),
    ("F1 at 0.5", "f1_at_0_5"),
    ("accuracy at 0.5", "accuracy_at_0_5"),
    ("best F1 on test (oracle threshold)", "f1_at_best_threshold"),
    ("ROC-AUC", "roc_auc"),
    ("PR-AUC", "pr_auc"),
    ("validation threshold", "external_threshold"),
)
VALIDATION_KEYS = ("f1_at_0_5", "f1_at_best_threshold", "best_threshold_by_f1", "roc_auc", "accuracy_at_0_5")


@dataclass
class EnsembleResult:
    out: str                 # where the files are (display form)
    metrics: dict
    table: dict              # members.json content


def split_uri(uri: str) -> tuple[str, str]:
    """`runs/x` -> ("runs", "x"); `s3://b/p/x` -> ("s3://b/p", "x") (RunDir's arguments)."""
    parent, sep, name = uri.rstrip("/").rpartition("/")
    return (parent if sep else "."), name


def sweep_run_dirs(sweep: str) -> list[str]:
    """The trial run directories of a sweep: the `run_dir` column of SWEEP/results.parquet
    when there is one (relative entries are relative to SWEEP), else every SWEEP/*/ that has
    a metrics.json."""
    storage = open_storage(sweep)
    try:
        raw = storage.read_bytes("results.parquet")
    except StorageError:
        raw = None
    if raw is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataError(f"{join(sweep, 'results.parquet')} is not a readable Parquet file: {exc}") from None
        if "run_dir" not in table.column_names:
            raise DataError(f"{join(sweep, 'results.parquet')} has no run_dir column (columns: "
                            f"{', '.join(table.column_names[:20])})")
        dirs = []
        for value in table["run_dir"].to_pylist():
            if not value:
                continue
            value = str(value)
            absolute = value.startswith(("/", "s3://")) or "://" in value
            dirs.append(value if absolute else join(sweep, value))
        return dirs
    dirs = [join(sweep, name) for name in storage.list() if storage.exists(f"{name}/metrics.json")]
    if not dirs:
        raise DataError(f"{sweep}: no results.parquet and no */metrics.json below it; pass the sweep's directory "
                        "(its storage path) or list runs with --runs")
    return dirs


def load_members(run_dirs: list[str], *, skip_unscored: bool = False) -> list[Predictions]:
    from tqdm import tqdm

    members = []
    for uri in tqdm(run_dirs, desc="reading runs", unit="run", disable=len(run_dirs) < 8, leave=False):
        try:
            members.append(load_predictions(uri))
        except DataError as exc:
            if not skip_unscored:
                raise
            log.warning("skipping %s: %s", uri, exc)
    return members


def _member_metrics(m: Predictions) -> dict:
    """A member scored exactly like a run: its threshold picked on its validation scores."""
    threshold = compute_metrics(m.valid.labels, m.valid.probs)["best_threshold_by_f1"]
    return compute_metrics(m.test.labels, m.test.probs, threshold=threshold)


def members_table(members: list[Predictions], per_member: list[dict], ensemble: dict) -> dict:
    names = [m.name for m in members]
    rows = []
    for label, key in TABLE_METRICS:
        values = [pm.get(key) for pm in per_member]
        ok = np.array([v for v in values if v is not None], dtype=np.float64)
        mean = float(ok.mean()) if ok.size else None
        std = float(ok.std(ddof=1)) if ok.size > 1 else (0.0 if ok.size else None)
        ens = ensemble.get(key)
        rows.append({"metric": label, "key": key, "members": dict(zip(names, values)), "mean": mean, "std": std,
                     "ensemble": ens, "gain": (ens - mean) if ens is not None and mean is not None else None})
    return {"members": [{"name": m.name, "uri": m.uri, "seed": m.seed} for m in members], "std": "sample (ddof=1)",
            "rows": rows}


def table_markdown(table: dict) -> str:
    names = [m["name"] for m in table["members"]]
    head = ["metric", *names, "mean ± std", "ensemble", "ensemble − mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for r in table_rows(table):
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines) + "\n"


def table_rows(table: dict) -> list[list[str]]:
    from streamguard.evaluation.document import fmt

    names = [m["name"] for m in table["members"]]
    out = []
    for r in table["rows"]:
        spread = "n/a" if r["mean"] is None else f"{r['mean']:.3f} ± {r['std']:.3f}"
        gain = "n/a" if r["gain"] is None else f"{r['gain']:+.3f}"
        out.append([r["metric"], *(fmt(r["members"][n]) for n in names), spread, fmt(r["ensemble"]), gain])
    return out


def table_csv(table: dict) -> str:
    names = [m["name"] for m in table["members"]]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "key", *names, "mean", "std", "ensemble", "gain"])
    for r in table["rows"]:
        w.writerow([r["metric"], r["key"], *("" if r["members"][n] is None else r["members"][n] for n in names),
                    *("" if r[k] is None else r[k] for k in ("mean", "std", "ensemble", "gain"))])
    return buf.getvalue()


def default_out(run_dirs: list[str], sweep: str | None) -> str:
    if sweep:
        return join(sweep, "ensemble")
    digest = hashlib.sha256("\n".join(sorted(run_dirs)).encode()).hexdigest()[:8]
    return join(split_uri(run_dirs[0])[0], f"ensemble-{digest}")


def _mean(items: list[Scored]) -> Scored:
    first = items[0]
    return Scored(first.ids, first.labels, np.mean([s.probs for s in items], axis=0))


def build_ensemble(run_dirs: list[str] | None = None, *, sweep: str | None = None, out: str | None = None,
                   plots: bool = True, n_boot: int = 2000, seed: int = 0) -> EnsembleResult:
    from streamguard.evaluation.stats import bootstrap_ci
    from streamguard.rundir import RunDir

    if bool(run_dirs) == bool(sweep):
        raise DataError("give either --runs RUN_DIR... or --sweep DIR (not both, not neither)")
    dirs = list(run_dirs) if run_dirs else sweep_run_dirs(sweep)
    if len({d.rstrip("/") for d in dirs}) != len(dirs):
        raise DataError("the same run directory is listed twice; each member must be a different run")
    members = load_members(dirs, skip_unscored=bool(sweep))
    if len(members) < 2:
        raise DataError(f"an ensemble needs at least 2 scored runs, found {len(members)}"
                        + (f" in {sweep}" if sweep else ""))
    tracks = sorted({str(m.metrics.get("track")) for m in members})
    splits = sorted({m.split for m in members})
    if len(splits) > 1:
        raise DataError(f"members scored different splits ({', '.join(splits)}); ensemble runs of one data setup")
    for m in members:
        if m.valid is None:
            raise DataError(f"{m.uri}: predictions.json has no validation scores (it predates ensembles); re-run its "
                            "`streamguard train` command: a finished run re-scores its best checkpoint and saves them")
    check_aligned(members, split="valid")
    check_aligned(members, split="test")

    valid, test = _mean([m.valid for m in members]), _mean([m.test for m in members])
    validation = compute_metrics(valid.labels, valid.probs)
    threshold = validation["best_threshold_by_f1"]
    metrics = compute_metrics(test.labels, test.probs, threshold=threshold)
    per_member = [_member_metrics(m) for m in members]
    table = members_table(members, per_member, metrics)
    from streamguard.evaluation.calibration import calibration

    cal = calibration(test.labels, test.probs)
    metrics.update({
        "split": splits[0], "track": tracks[0] if len(tracks) == 1 else "+".join(tracks), "run": "ensemble",
        "best_step": None, "resumes": [],  # a run's keys that have no single value for an ensemble
        "ensemble": {"members": [m.uri for m in members], "seeds": [m.seed for m in members], "size": len(members),
                     "method": "mean of member probabilities; threshold picked on the mean validation probabilities"},
        "validation": {k: validation[k] for k in VALIDATION_KEYS},
        "confidence_intervals": bootstrap_ci(test.labels, test.probs, threshold=threshold, n_boot=n_boot, seed=seed),
        "calibration": {k: cal[k] for k in ("bins", "ece", "mce", "brier")},
    })

    out = out or default_out(dirs, sweep)
    od = RunDir(*split_uri(out))
    od.write_json("ensemble_metrics.json", metrics)
    od.write_json("ensemble_predictions.json", {
        "split": splits[0], "sample_id": test.ids.tolist(), "label": test.labels.tolist(), "prob": test.probs.tolist(),
        "valid": {"sample_id": valid.ids.tolist(), "label": valid.labels.tolist(), "prob": valid.probs.tolist()}})
    od.write_json("members.json", table)
    od.write_text("members.csv", table_csv(table))
    od.write_text("members.md", table_markdown(table))
    od.write_json("calibration.json", cal)
    images: list[tuple[str, str]] = []
    if plots:
        images = _plots(od, members, per_member, test, metrics, cal)
    _report(od, members, metrics, table, images)
    return EnsembleResult(out=od.display(), metrics=metrics, table=table)


def _plots(od, members, per_member, test: Scored, metrics: dict, cal: dict) -> list[tuple[str, str]]:
    from pathlib import Path

    from streamguard.evaluation.calibration import plot_reliability
    from streamguard.evaluation.plots import save_report_plots

    written = save_report_plots(od.path("plots"), test.labels, test.probs, metrics, None)
    plot_reliability(cal, od.path("plots/reliability.png"), title="Ensemble reliability")
    plot_members(members, per_member, metrics, od.path("plots/members.png"))
    rels = [str(Path(p).relative_to(od.local)) for p in written.values()]
    rels += ["plots/reliability.png", "plots/members.png"]
    for rel in rels:
        od.publish(rel)
    captions = {"members": "members vs ensemble", "roc": "ROC", "pr": "precision-recall",
                "threshold_sweep": "threshold sweep", "reliability": "reliability diagram",
                "confusion_matrix_0_5": "confusion matrix at 0.5",
                "confusion_matrix_best": "confusion matrix at the best test threshold"}
    order = ["members", "roc", "pr", "threshold_sweep", "reliability", "confusion_matrix_0_5", "confusion_matrix_best"]
    by_stem = {Path(r).stem: r for r in rels}
    return [(captions[s], by_stem[s]) for s in order if s in by_stem]


def plot_members(members, per_member: list[dict], ensemble: dict, path) -> None:
    """Per-member F1 / ROC-AUC / PR-AUC as dots, their mean +- std as a bar, the ensemble as a line."""
    from streamguard.evaluation.plots import _new_figure, _save

    keys = [("F1 @ val thr", "f1_at_external_threshold"), ("F1 @ 0.5", "f1_at_0_5"), ("ROC-AUC", "roc_auc"),
            ("PR-AUC", "pr_auc"), ("accuracy @ val thr", "accuracy_at_external_threshold")]
    fig = _new_figure((8.0, 4.6))
    ax = fig.add_subplot()
    for i, (label, key) in enumerate(keys):
        vals = np.array([pm.get(key) for pm in per_member if pm.get(key) is not None], dtype=np.float64)
        if vals.size:
            ax.bar(i, vals.mean(), yerr=vals.std(ddof=1) if vals.size > 1 else 0, color="C0", alpha=0.3, width=0.6,
                   capsize=6, label="member mean ± std" if i == 0 else None)
            ax.scatter(np.full(vals.size, i) + np.linspace(-0.15, 0.15, vals.size), vals, color="C0", s=18, zorder=3,
                       label="members" if i == 0 else None)
        if ensemble.get(key) is not None:
            ax.hlines(ensemble[key], i - 0.35, i + 0.35, color="C3", linewidth=2.5, zorder=4,
                      label="ensemble" if i == 0 else None)
    ax.set_xticks(range(len(keys)), labels=[k[0] for k in keys])
    ax.set_ylim(0, 1.01)
    ax.set_ylabel("test score")
    ax.set_title(f"{len(members)} members vs their ensemble")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="lower right")
    _save(fig, path)


def _report(od, members, metrics: dict, table: dict, images) -> None:
    from streamguard.evaluation.document import Section, fmt, write_report_files

    ci = metrics["confidence_intervals"]
    ci_rows = [["metric", "estimate", f"{int(ci['confidence'] * 100)}% CI"]]
    for k, v in ci["metrics"].items():
        ci_rows.append([k, fmt(v["estimate"]), "n/a" if v["low"] is None else f"[{v['low']:.3f}, {v['high']:.3f}]"])
    names = [m["name"] for m in table["members"]]
    summary = (f"{len(members)} members ({', '.join(names)}), {metrics['n_samples']} {metrics['split']} samples. "
               f"Threshold {metrics['external_threshold']:.2f} picked on the mean validation probabilities: "
               f"F1 {fmt(metrics['f1_at_external_threshold'])}, "
               f"accuracy {fmt(metrics['accuracy_at_external_threshold'])}, "
               f"ROC-AUC {fmt(metrics['roc_auc'])}; ECE {fmt(metrics['calibration']['ece'])}.")
    members_note = ("Each member scored like a run (its own validation threshold); mean ± sample standard "
                    "deviation over members.")
    ci_note = (f"{ci['method']}, {ci['n_boot']} replicates, seed {ci['seed']}, "
               f"{'stratified by class' if ci['stratified'] else 'unstratified'}, "
               f"threshold {ci['threshold']:.2f} held fixed.")
    sections = [
        Section("Summary", [summary]),
        Section("Members against the ensemble", [members_note],
                table=[["metric", *names, "mean ± std", "ensemble", "ensemble − mean"], *table_rows(table)]),
        Section("Confidence intervals (ensemble)", [ci_note], table=ci_rows),
    ]
    if images:
        sections.append(Section("Plots", images=list(images)))
    write_report_files(od, "report", "Ensemble report", sections)
