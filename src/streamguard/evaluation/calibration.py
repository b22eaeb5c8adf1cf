"""Calibration of P(vulnerable): reliability bins, ECE, MCE, Brier score and the
reliability diagram.

Bins are equal-width over [0, 1] (10 by default; a probability of exactly 1.0 falls in the
last bin). Per bin: the mean predicted probability (confidence) and the observed share of
vulnerable samples. ECE = sum over bins of (bin size / n) * |observed - confidence|; MCE is
the largest such gap over non-empty bins. This is calibration of the vulnerable-class
probability (the score thresholds are applied to), not of the top-label confidence.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from streamguard.train.evaluate import _validate


def calibration(labels: Any, probs: Any, *, bins: int = 10) -> dict:
    """{"bins", "ece", "mce", "brier", "table": [{"low", "high", "n", "confidence", "observed"}]}."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y, p = _validate(labels, probs)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    table, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        row = {"low": float(edges[b]), "high": float(edges[b + 1]), "n": n, "confidence": None, "observed": None}
        if n:
            conf, obs = float(p[m].mean()), float(y[m].mean())
            row.update(confidence=conf, observed=obs)
            gap = abs(obs - conf)
            ece += n / y.size * gap
            mce = max(mce, gap)
        table.append(row)
    return {"bins": bins, "ece": float(ece), "mce": float(mce), "brier": float(np.mean((p - y) ** 2)),
            "table": table}


def plot_reliability(cal: dict, path: str | os.PathLike, *, title: str = "Reliability diagram") -> None:
    """Observed share of vulnerable samples against mean predicted probability per bin, with
    the diagonal of perfect calibration, and the bin sizes underneath."""
    from streamguard.evaluation.plots import _new_figure, _save

    rows = cal["table"]
    fig = _new_figure((6.0, 6.4))
    ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    full = [r for r in rows if r["n"]]
    centers = [(r["low"] + r["high"]) / 2 for r in rows]
    width = rows[0]["high"] - rows[0]["low"] if rows else 0.1
    ax.bar([(r["low"] + r["high"]) / 2 for r in full], [r["observed"] for r in full], width=width * 0.9,
           alpha=0.35, color="C0", edgecolor="C0", label="observed share per bin")
    ax.plot([r["confidence"] for r in full], [r["observed"] for r in full], marker="o", color="C0", linewidth=2,
            label=f"model (ECE {cal['ece']:.3f}, MCE {cal['mce']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_ylabel("Observed share vulnerable")
    ax.set_title(f"{title}\n(Brier {cal['brier']:.3f}, {sum(r['n'] for r in rows):,} samples)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    hist.bar(centers, [r["n"] for r in rows], width=width * 0.9, color="C1", alpha=0.7)
    hist.set_xlabel("Predicted P(vulnerable)")
    hist.set_ylabel("Samples")
    hist.grid(alpha=0.3)
    _save(fig, path)
