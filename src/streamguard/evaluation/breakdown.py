"""Metrics per group of samples: per project and per CWE, where the data carries them.

The prepared shards keep a `project` (Devign: FFmpeg/qemu; Big-Vul and `dir:` labels
files: the project column) and a `cwe` column ('CWE-<n>', comma-joined when several; ''
when unknown). A sample with several CWEs counts in each of them. Groups are scored at the
run's threshold (picked on validation), with the same counting as metrics.json.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from streamguard.train.evaluate import _ranking_metrics


def _group_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    pred = p >= threshold
    pos = y.astype(bool)
    tp, fp = int((pred & pos).sum()), int((pred & ~pos).sum())
    fn, tn = int((~pred & pos).sum()), int((~pred & ~pos).sum())
    n = y.size
    roc, _ = _ranking_metrics(y, p) if 0 < pos.sum() < n else (None, None)
    return {"n": n, "positive": int(pos.sum()), "accuracy": (tp + tn) / n,
            "precision": tp / (tp + fp) if tp + fp else 0.0, "recall": tp / (tp + fn) if tp + fn else None,
            "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0, "roc_auc": roc,
            "mean_prob": float(p.mean()), "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}}


def breakdown(labels, probs, groups, *, threshold: float, multi: bool = False, min_size: int = 1) -> list[dict]:
    """One row per group value (largest groups first); `multi`: comma-separated values,
    a sample counts in each. Empty values are grouped as "(none)"."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    members: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(groups):
        text = "" if value is None else str(value).strip()
        keys = [k.strip() for k in text.split(",") if k.strip()] if multi else [text]
        for key in keys or [""]:
            members[key or "(none)"].append(i)
    rows = []
    for key, idx in members.items():
        if len(idx) >= min_size:
            ix = np.asarray(idx)
            rows.append({"group": key, **_group_metrics(y[ix], p[ix], threshold)})
    return sorted(rows, key=lambda r: (-r["n"], r["group"]))


def has_groups(values) -> bool:
    """True when a metadata column carries something worth breaking down by."""
    return any(v not in (None, "") for v in values)
