"""Binary-classification metrics shared by every track (the ``metrics.json`` schema).

Class 1 is "vulnerable". A sample is predicted positive iff ``prob >= threshold``.
Plain numpy (results match scikit-learn; the tests check it): no torch, no plotting,
so it is cheap to import anywhere and fast enough to run every epoch.

Schema: every key in :data:`METRIC_KEYS` is always present. The external-threshold keys
(:data:`EXTERNAL_THRESHOLD_KEYS`) are always present too and are ``None`` when
``compute_metrics`` was called without ``threshold=``, so every track's file has the
same shape. Undefined values (e.g. ROC-AUC with one class) are ``None``, never NaN.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EXTERNAL_THRESHOLD_KEYS",
    "METRIC_KEYS",
    "THRESHOLDS",
    "compute_metrics",
    "f1_for_early_stopping",
    "write_metrics_json",
]

# Rounded so the values are exactly 0.30, 0.31, ... 0.70 as written to JSON.
THRESHOLDS: np.ndarray = np.round(np.arange(0.30, 0.70 + 1e-9, 0.01), 2)
# Index of 0.50 in THRESHOLDS; tie-breaking works on integer index distance so that
# float noise (|0.49-0.5| != |0.51-0.5|) cannot pick a side.
_MID_INDEX = int(np.argmin(np.abs(THRESHOLDS - 0.5)))
assert THRESHOLDS.shape == (41,) and THRESHOLDS[_MID_INDEX] == 0.5

SWEEP_KEYS: tuple[str, ...] = (
    "threshold",
    "f1",
    "precision",
    "recall",
    "accuracy",
    "balanced_accuracy",
)

EXTERNAL_THRESHOLD_KEYS: tuple[str, ...] = (
    "external_threshold",
    "f1_at_external_threshold",
    "precision_at_external_threshold",
    "recall_at_external_threshold",
    "accuracy_at_external_threshold",
    "balanced_accuracy_at_external_threshold",
    "confusion_matrix_external_threshold",
)

METRIC_KEYS: tuple[str, ...] = (
    "n_samples",
    "n_positive",
    "n_negative",
    "positive_rate",
    "f1_at_0_5",
    "precision_at_0_5",
    "recall_at_0_5",
    "accuracy_at_0_5",
    "balanced_accuracy_at_0_5",
    "predicted_positive_rate_at_0_5",
    "best_threshold_by_f1",
    "f1_at_best_threshold",
    "precision_at_best_threshold",
    "recall_at_best_threshold",
    "accuracy_at_best_threshold",
    "balanced_accuracy_at_best_threshold",
    "roc_auc",
    "pr_auc",
    "confusion_matrix_threshold_0_5",
    "confusion_matrix_best_threshold",
    "threshold_sweep",
    "warnings",
    "timestamp",
    *EXTERNAL_THRESHOLD_KEYS,
)


# --------------------------------------------------------------------------- validation


def _validate(labels: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as int64, probs as float64), or raise ValueError."""
    try:
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"labels must be numeric 0/1 values: {exc}") from exc
    try:
        p = np.asarray(probs, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"probs must be numeric probabilities: {exc}") from exc
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if p.ndim != 1:
        raise ValueError(
            f"probs must be 1-D P(vulnerable) values, got shape {p.shape}"
        )
    if y.shape[0] != p.shape[0]:
        raise ValueError(
            f"labels and probs must have the same length, got {y.shape[0]} and {p.shape[0]}"
        )
    if y.shape[0] == 0:
        raise ValueError("cannot compute metrics on an empty set (0 samples)")
    bad_labels = ~((y == 0) | (y == 1))
    if bad_labels.any():
        bad = np.unique(y[bad_labels])[:5].tolist()
        raise ValueError(f"labels must be 0 or 1 only, found {bad}")
    if not np.isfinite(p).all():
        raise ValueError(
            f"probs must be finite, found {int((~np.isfinite(p)).sum())} NaN/inf value(s)"
        )
    if (p < 0).any() or (p > 1).any():
        raise ValueError(
            f"probs must lie in [0, 1], found range [{p.min():.6g}, {p.max():.6g}]"
        )
    return y.astype(np.int64), p


def _validate_threshold(threshold: Any) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}") from exc
    if not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold must be a finite number in [0, 1], got {threshold!r}")
    return t


# --------------------------------------------------------------------------- core maths


def _counts(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Confusion counts for every threshold at once (shape: len(thresholds))."""
    # (T, N) boolean matrix; 41 x 30k is ~1.2 MB, far cheaper than 41 sklearn calls.
    pred = p[None, :] >= thresholds[:, None]
    pos = y.astype(bool)
    n_pos = int(pos.sum())
    n = y.shape[0]
    pred_pos = pred.sum(axis=1, dtype=np.int64)
    tp = pred[:, pos].sum(axis=1, dtype=np.int64)
    fp = pred_pos - tp
    fn = n_pos - tp
    tn = (n - n_pos) - fp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _rates(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-threshold metrics; F1/precision/recall for class 1 with zero_division=0."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    n = tp + fp + fn + tn
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    accuracy = _safe_div(tp + tn, n)
    # Balanced accuracy as sklearn defines it: mean recall over the classes present in
    # the labels (so with one class it is that class's recall, not a fake 0.5 average).
    has_pos = (tp + fn) > 0
    has_neg = (tn + fp) > 0
    tnr = _safe_div(tn, tn + fp)
    n_classes = has_pos.astype(np.float64) + has_neg.astype(np.float64)
    balanced = _safe_div(np.where(has_pos, recall, 0.0) + np.where(has_neg, tnr, 0.0), n_classes)
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
    }


def _best_index(f1: np.ndarray) -> int:
    """Argmax of F1; ties -> threshold closest to 0.5, then the lower threshold."""
    # Equal counts give bit-identical F1, but different counts can give F1 values that
    # are mathematically equal and differ by an ulp; treat those as ties too.
    candidates = np.flatnonzero(f1 >= f1.max() - 1e-12)
    return int(min(candidates, key=lambda i: (abs(int(i) - _MID_INDEX), int(i))))


def _ranking_metrics(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """(ROC-AUC, average precision) from one sort; None where undefined.

    Same maths as sklearn's roc_auc_score / average_precision_score (tied scores form one
    curve point), but ~10x faster because both share the sort and skip re-validation.
    """
    n_pos = int(y.sum())
    n_neg = y.shape[0] - n_pos
    if n_pos == 0:
        return None, None
    order = np.argsort(-p, kind="mergesort")
    ps = p[order]
    # Last index of each run of equal scores = one point on the curves.
    ends = np.r_[np.flatnonzero(np.diff(ps)), ps.shape[0] - 1]
    tps = np.cumsum(y[order], dtype=np.int64)[ends].astype(np.float64)
    fps = (ends + 1) - tps
    recall = tps / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * (tps / (tps + fps))))
    if n_neg == 0:
        return None, ap
    tpr = np.r_[0.0, recall]
    fpr = np.r_[0.0, fps / n_neg]
    roc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0)
    return roc, ap


def _cm(c: dict[str, np.ndarray], i: int) -> dict[str, int]:
    return {k: int(c[k][i]) for k in ("tn", "fp", "fn", "tp")}


def _at(y: np.ndarray, p: np.ndarray, t: float) -> tuple[dict[str, int], dict[str, float]]:
    c = _counts(y, p, np.array([t], dtype=np.float64))
    r = _rates(c)
    return _cm(c, 0), {k: float(v[0]) for k, v in r.items()}


# --------------------------------------------------------------------------- public API


def compute_metrics(labels: Any, probs: Any, *, threshold: float | None = None) -> dict:
    """Compute the shared ``metrics.json`` dict (JSON-safe; see module docstring).

    labels: 0/1 values; probs: P(vulnerable) in [0, 1]; threshold: an extra, externally
    chosen threshold (e.g. picked on validation) reported under ``*_external_threshold``.
    Raises ValueError on empty, mismatched or out-of-range input.
    """
    y, p = _validate(labels, probs)
    ext_t = None if threshold is None else _validate_threshold(threshold)

    n = int(y.shape[0])
    n_pos = int(y.sum())
    n_neg = n - n_pos
    warnings: list[str] = []

    counts = _counts(y, p, THRESHOLDS)
    rates = _rates(counts)
    best = _best_index(rates["f1"])

    # 0.5 is exactly THRESHOLDS[_MID_INDEX], so the sweep already holds its counts.
    cm05 = _cm(counts, _MID_INDEX)
    r05 = {k: float(v[_MID_INDEX]) for k, v in rates.items()}
    pred_pos_05 = cm05["tp"] + cm05["fp"]
    if pred_pos_05 in (0, n):
        cls = 1 if pred_pos_05 == n else 0
        warnings.append(
            f"collapsed model: predicts only class {cls} for all {n} samples at threshold 0.5"
        )

    if n_pos == 0 or n_neg == 0:
        only = 1 if n_neg == 0 else 0
        warnings.append(
            f"labels contain only class {only} ({n} samples): ROC-AUC is undefined"
            + ("" if n_pos else " and PR-AUC is undefined")
        )
    # ROC-AUC needs both classes; average precision needs a positive (all-positive -> 1.0).
    roc_auc, pr_auc = _ranking_metrics(y, p)

    sweep = [
        {
            "threshold": float(THRESHOLDS[i]),
            **{k: float(rates[k][i]) for k in SWEEP_KEYS if k != "threshold"},
        }
        for i in range(THRESHOLDS.shape[0])
    ]

    metrics: dict[str, Any] = {
        "n_samples": n,
        "n_positive": n_pos,
        "n_negative": n_neg,
        "positive_rate": n_pos / n,
        "f1_at_0_5": r05["f1"],
        "precision_at_0_5": r05["precision"],
        "recall_at_0_5": r05["recall"],
        "accuracy_at_0_5": r05["accuracy"],
        "balanced_accuracy_at_0_5": r05["balanced_accuracy"],
        "predicted_positive_rate_at_0_5": pred_pos_05 / n,
        "best_threshold_by_f1": float(THRESHOLDS[best]),
        "f1_at_best_threshold": float(rates["f1"][best]),
        "precision_at_best_threshold": float(rates["precision"][best]),
        "recall_at_best_threshold": float(rates["recall"][best]),
        "accuracy_at_best_threshold": float(rates["accuracy"][best]),
        "balanced_accuracy_at_best_threshold": float(rates["balanced_accuracy"][best]),
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "confusion_matrix_threshold_0_5": cm05,
        "confusion_matrix_best_threshold": _cm(counts, best),
        "threshold_sweep": sweep,
        "warnings": warnings,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    metrics.update(dict.fromkeys(EXTERNAL_THRESHOLD_KEYS))
    if ext_t is not None:
        cm_ext, r_ext = _at(y, p, ext_t)
        metrics.update(
            {
                "external_threshold": ext_t,
                "f1_at_external_threshold": r_ext["f1"],
                "precision_at_external_threshold": r_ext["precision"],
                "recall_at_external_threshold": r_ext["recall"],
                "accuracy_at_external_threshold": r_ext["accuracy"],
                "balanced_accuracy_at_external_threshold": r_ext["balanced_accuracy"],
                "confusion_matrix_external_threshold": cm_ext,
            }
        )
    return metrics


def f1_for_early_stopping(metrics: dict) -> float:
    """The early-stopping score: F1 of the vulnerable class at the best swept threshold."""
    try:
        return float(metrics["f1_at_best_threshold"])
    except KeyError:
        raise KeyError(
            "metrics has no 'f1_at_best_threshold'; build it with compute_metrics()"
        ) from None


def _json_default(obj: Any) -> Any:
    # Callers may add numpy scalars/arrays to the dict before writing it.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def to_json(obj: Any) -> str:
    """Strict JSON (NaN rejected, numpy values converted), indent=2, sorted keys."""
    return json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default) + "\n"


def write_metrics_json(path: str | os.PathLike, metrics: dict) -> None:
    """Atomically write ``metrics`` as JSON; serialised first so a bad value never touches the disk."""
    from streamguard.storage import atomic_write

    atomic_write(path, to_json(metrics).encode("utf-8"))

def extra_sections(info_extra: dict, scored: dict, cwe_labels: list[str]) -> dict:
    """Sections metrics.json carries beside the binary schema: a track's own (fusion: the
    baseline and base scores) and, when the model has a CWE head, `cwe`."""
    out = dict(info_extra or {})
    if scored.get("cwe_probs") is not None and scored.get("cwe_labels") is not None:
        out["cwe"] = compute_cwe_metrics(scored["cwe_probs"], scored["cwe_labels"], cwe_labels)
    return out


def compute_cwe_metrics(probs: Any, targets: Any, labels: list[str], *, threshold: float = 0.5) -> dict:
    """The CWE head's multi-label scores (an extra section beside the binary schema):
    micro/macro F1 at `threshold`, and per CWE the support, F1 and average precision."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64) > 0.5
    pred = p >= threshold
    tp = (pred & y).sum(0).astype(np.float64)
    fp = (pred & ~y).sum(0).astype(np.float64)
    fn = (~pred & y).sum(0).astype(np.float64)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    support = y.sum(0)
    present = support > 0
    per_label = {}
    for j, name in enumerate(labels):
        _, ap = _ranking_metrics(y[:, j].astype(np.int64), p[:, j]) if present[j] else (None, None)
        per_label[name] = {"support": int(support[j]), "f1": float(f1[j]), "average_precision": ap}
    micro = float(_safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))
    return {"labels": list(labels), "threshold": threshold, "micro_f1": micro,
            "macro_f1": float(f1[present].mean()) if present.any() else None,
            "exact_match": float((pred == y).all(1).mean()) if len(y) else None, "per_label": per_label}
