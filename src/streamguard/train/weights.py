"""Per-sample training weights (`train.sample_weights`), applied one of two ways
(`train.weighted_sampling`): as loss weights carried by every batch, or as the sampling
distribution of a resumable weighted sampler. Validation and test are never weighted."""

from __future__ import annotations

import numpy as np

from streamguard.errors import ConfigError


def sample_weights(split, mode: str) -> np.ndarray | None:
    """[N] float weights with mean 1, or None for `none`.

    balanced: n / (2 n_class), so each class weighs the same in total.
    column:   the prepared data's `weight` column (confidence weights from the source;
              missing values count 1)."""
    if mode == "none":
        return None
    if mode == "balanced":
        y = split.target
        counts = np.bincount(y, minlength=2).astype(np.float64)
        w = np.where(counts[y] > 0, len(y) / (2.0 * np.maximum(counts[y], 1.0)), 0.0)
    elif mode == "column":
        if "weight" not in getattr(getattr(split, "table", None), "column_names", ()):
            raise ConfigError("train.sample_weights=column needs a `weight` column in the prepared data")
        import pyarrow.compute as pc

        w = pc.fill_null(split.table["weight"], 1.0).to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        raise ConfigError(f"unknown train.sample_weights {mode!r}")
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"train.sample_weights={mode}: weights must be finite, >= 0 and not all zero")
    return (w / w.mean()).astype(np.float32)


def apply_sample_weights(split, *, mode: str, weighted_sampling: bool) -> np.ndarray | None:
    """Set the loss weights on `split` (every batch then carries `weight`), or return the
    sampler's weights when `weighted_sampling` (the loss stays unweighted)."""
    w = sample_weights(split, mode)
    if w is None or weighted_sampling:
        return w
    split.sample_weight = w
    return None
