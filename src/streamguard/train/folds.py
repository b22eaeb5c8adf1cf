"""Out-of-fold scoring: a run trained with `data.holdout_fold=k` scores the fold it never
saw, plus the validation and test splits, and records which samples it trained on, so the
stacking step (tracks/fusion.py) can prove that no sample is scored by a model that saw it."""

from __future__ import annotations

from streamguard.train.step import predict_outputs

FOLD_PREDICTIONS = "fold_predictions.json"


def fold_predictions(model, splits, loader, *, fold: int, known: dict | None = None, **predict_kw) -> dict:
    """`loader(split)` builds an evaluation loader; `predict_kw` are predict's (forward, device,
    dtype); `known` holds `predict_outputs` results already computed, by split name."""
    out = {"fold": fold, "train_sample_ids": [int(i) for i in splits.train.idx]}
    for name in ("holdout", "valid", "test"):
        split = getattr(splits, name)
        if split is None or len(split) == 0:
            out[name] = {"sample_id": [], "label": [], "margin": []}
            continue
        r = (known or {}).get(name) or predict_outputs(model, loader(split), **predict_kw)
        out[name] = {"sample_id": [int(i) for i in r["ids"]], "label": [int(y) for y in r["labels"]],
                     "margin": [float(m) for m in r["margins"]]}
    return out
