"""PNG report plots for a finished evaluation (confusion matrices, ROC, PR, sweep, history).

Figures are built with ``matplotlib.figure.Figure`` on the Agg canvas rather than through
pyplot: no global figure registry (so nothing leaks across thousands of calls, and it is
safe in worker threads), no display needed, and importing this module never switches the
backend of an interactive session that also imports it. Every PNG is written to a temporary
name in the target directory and then renamed, so a killed process never leaves a partial
file under the final name.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Agg canvas used directly: headless rendering without matplotlib.use(), which would
# change the process-wide backend for any notebook or app that imports this module.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "plot_confusion_matrix",
    "plot_history",
    "plot_pr",
    "plot_roc",
    "plot_threshold_sweep",
    "save_report_plots",
]

DPI = 110
_CM_KEYS = ("tn", "fp", "fn", "tp")
_CLASS_NAMES = ("benign (0)", "vulnerable (1)")


# --------------------------------------------------------------------------- helpers


def _new_figure(figsize: tuple[float, float] = (6.0, 5.0)) -> Figure:
    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> None:
    """Render ``fig`` to a PNG at ``path`` atomically."""
    from streamguard.storage import atomic_write

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=DPI)
    finally:
        fig.clear()  # drop artists now instead of waiting for the garbage collector
    atomic_write(path, buf.getvalue())


def _note(ax: Any, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=11,
        wrap=True,
        bbox={"boxstyle": "round", "facecolor": "#fff3cd", "edgecolor": "#c9a227"},
    )


def _labels_probs(labels: Any, probs: Any):
    # Same validation as the metrics, so a plot never disagrees with metrics.json.
    from streamguard.train.evaluate import _validate

    return _validate(labels, probs)


def _num(value: Any) -> float:
    """None / missing / non-numeric -> NaN, which matplotlib leaves as a gap."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- plots


def plot_confusion_matrix(
    cm: dict, path: str | os.PathLike, *, title: str = "Confusion matrix"
) -> None:
    """2x2 heatmap (rows: actual, cols: predicted) annotated with counts and % of total."""
    missing = [k for k in _CM_KEYS if k not in cm]
    if missing:
        raise ValueError(f"confusion matrix dict is missing keys {missing}; need {_CM_KEYS}")
    counts = [[int(cm["tn"]), int(cm["fp"])], [int(cm["fn"]), int(cm["tp"])]]
    total = sum(map(sum, counts))
    vmax = max(max(map(max, counts)), 1)

    fig = _new_figure((5.2, 4.6))
    ax = fig.add_subplot()
    im = ax.imshow(counts, cmap="Blues", vmin=0, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    names = (("TN", "FP"), ("FN", "TP"))
    for r in range(2):
        for c in range(2):
            v = counts[r][c]
            pct = 100.0 * v / total if total else 0.0
            ax.text(
                c,
                r,
                f"{names[r][c]}\n{v:,}\n({pct:.1f}%)",
                ha="center",
                va="center",
                fontsize=12,
                color="white" if v > 0.5 * vmax else "black",
            )
    ax.set_xticks([0, 1], labels=_CLASS_NAMES)
    ax.set_yticks([0, 1], labels=_CLASS_NAMES, rotation=90, va="center")
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title(f"{title}\n(n = {total:,})")
    _save(fig, path)


def plot_roc(labels: Any, probs: Any, path: str | os.PathLike) -> None:
    """ROC curve with AUC in the legend; a single-class set gets a note instead of a curve."""
    y, p = _labels_probs(labels, probs)
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC = 0.5)")
    if y.min() == y.max():
        _note(ax, f"ROC undefined: labels contain only class {int(y[0])}\n({y.size:,} samples)")
    else:
        from sklearn.metrics import roc_auc_score, roc_curve

        fpr, tpr, _ = roc_curve(y, p)
        auc = roc_auc_score(y, p)
        ax.plot(fpr, tpr, color="C0", linewidth=2, label=f"model (AUC = {auc:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate (recall, vulnerable)")
    ax.set_title("ROC curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(fig, path)


def plot_pr(labels: Any, probs: Any, path: str | os.PathLike) -> None:
    """Precision-recall curve for the vulnerable class, AP in the legend, prevalence baseline."""
    y, p = _labels_probs(labels, probs)
    pos_rate = float(y.mean())
    fig = _new_figure()
    ax = fig.add_subplot()
    ax.axhline(
        pos_rate, linestyle="--", color="grey", linewidth=1,
        label=f"baseline (positive rate = {pos_rate:.3f})",
    )
    if y.max() == 0:
        _note(ax, f"PR curve undefined: no vulnerable samples\n({y.size:,} samples)")
    else:
        from sklearn.metrics import average_precision_score, precision_recall_curve

        precision, recall, _ = precision_recall_curve(y, p)
        ap = average_precision_score(y, p)
        ax.step(recall, precision, where="post", color="C1", linewidth=2,
                label=f"model (AP = {ap:.4f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Recall (vulnerable)")
    ax.set_ylabel("Precision (vulnerable)")
    ax.set_title("Precision-recall curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    _save(fig, path)


def plot_history(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Two panels: train/val loss per epoch, and validation F1 (None values become gaps)."""
    rows = list(history or [])
    epochs = [_num(r.get("epoch", i + 1)) for i, r in enumerate(rows)]
    epochs = [e if not math.isnan(e) else float(i + 1) for i, e in enumerate(epochs)]
    train_loss = [_num(r.get("train_loss")) for r in rows]
    val_loss = [_num(r.get("val_loss")) for r in rows]
    val_f1 = [_num(r.get("val_f1")) for r in rows]

    def has(values: list[float]) -> bool:
        return any(not math.isnan(v) for v in values)

    fig = _new_figure((10.0, 4.2))
    ax_loss, ax_f1 = fig.subplots(1, 2)
    # Markers so that isolated points (e.g. validation every k epochs) stay visible.
    if has(train_loss):
        ax_loss.plot(epochs, train_loss, marker="o", markersize=3, label="train loss")
    if has(val_loss):
        ax_loss.plot(epochs, val_loss, marker="s", markersize=3, label="val loss")
    if has(train_loss) or has(val_loss):
        ax_loss.legend(loc="best")
    else:
        _note(ax_loss, "no losses recorded")
    ax_loss.set_xlabel("Epoch")
    ax_loss.set_ylabel("Loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3)

    if has(val_f1):
        ax_f1.plot(epochs, val_f1, marker="o", markersize=3, color="C2",
                   label="val F1 (vulnerable)")
        # First epoch reaching the maximum, as early stopping would keep it.
        best = max(range(len(val_f1)),
                   key=lambda i: (-math.inf if math.isnan(val_f1[i]) else val_f1[i], -i))
        ax_f1.scatter([epochs[best]], [val_f1[best]], s=80, facecolors="none", edgecolors="C3",
                      zorder=3, label=f"best {val_f1[best]:.4f} @ epoch {epochs[best]:g}")
        ax_f1.legend(loc="best")
    else:
        _note(ax_f1, "no validation F1 recorded")
    ax_f1.set_ylim(0, 1.01)
    ax_f1.set_xlabel("Epoch")
    ax_f1.set_ylabel("F1")
    ax_f1.set_title("Validation F1")
    ax_f1.grid(alpha=0.3)
    fig.suptitle("Training curves")
    _save(fig, path)


def plot_threshold_sweep(sweep: Sequence[dict], path: str | os.PathLike) -> None:
    """F1, precision and recall of the vulnerable class against the decision threshold."""
    rows = sorted(sweep or [], key=lambda r: _num(r.get("threshold")))
    t = [_num(r.get("threshold")) for r in rows]
    fig = _new_figure((7.0, 4.6))
    ax = fig.add_subplot()
    if not rows:
        _note(ax, "empty threshold sweep")
    else:
        for key, style in (("f1", "-"), ("precision", "--"), ("recall", ":")):
            ax.plot(t, [_num(r.get(key)) for r in rows], linestyle=style, linewidth=2,
                    label=key if key != "f1" else "F1")
        f1 = [_num(r.get("f1")) for r in rows]
        if any(not math.isnan(v) for v in f1):
            # Same tie-break as metrics.json: closest to 0.5, then lower threshold.
            top = max(v for v in f1 if not math.isnan(v))
            i = min(
                (k for k, v in enumerate(f1) if v >= top - 1e-12),
                key=lambda k: (round(abs(t[k] - 0.5), 6), t[k]),
            )
            ax.axvline(t[i], color="C3", linewidth=1,
                       label=f"best F1 {f1[i]:.4f} @ {t[i]:.2f}")
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1, label="0.5")
        ax.legend(loc="best")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("Threshold (predict vulnerable if P >= threshold)")
    ax.set_ylabel("Score (vulnerable class)")
    ax.set_title("Threshold sweep")
    ax.grid(alpha=0.3)
    _save(fig, path)


def save_report_plots(
    out_dir: str | os.PathLike,
    labels: Any,
    probs: Any,
    metrics: dict,
    history: list[dict] | None,
) -> dict[str, str]:
    """Write the standard report PNGs into ``out_dir``; return ``{name: path}``.

    Names: confusion_matrix_0_5, confusion_matrix_best, roc, pr, threshold_sweep and,
    when ``history`` is non-empty, training_curves.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("confusion_matrix_0_5", "confusion_matrix_best", "roc", "pr", "threshold_sweep")
    paths = {name: str(out / f"{name}.png") for name in names}
    plot_confusion_matrix(
        metrics["confusion_matrix_threshold_0_5"], paths["confusion_matrix_0_5"],
        title="Confusion matrix at threshold 0.50",
    )
    best_t = metrics.get("best_threshold_by_f1")
    best_title = (
        f"Confusion matrix at best threshold {best_t:.2f}"
        if isinstance(best_t, (int, float))
        else "Confusion matrix at best threshold"
    )
    plot_confusion_matrix(
        metrics["confusion_matrix_best_threshold"], paths["confusion_matrix_best"], title=best_title
    )
    plot_roc(labels, probs, paths["roc"])
    plot_pr(labels, probs, paths["pr"])
    plot_threshold_sweep(metrics.get("threshold_sweep") or [], paths["threshold_sweep"])
    if history:
        paths["training_curves"] = str(out / "training_curves.png")
        plot_history(history, paths["training_curves"])
    return paths
