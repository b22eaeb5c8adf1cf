"""Fusion's stacking features: out-of-fold only, checked sample by sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamguard import config
from streamguard.errors import DataError
from streamguard.tracks.fusion import Stacker, assemble, base_config, baseline


def _fold_run(fold, ids, folds, margin_of):
    held = [int(i) for i, f in zip(ids, folds) if f == fold]
    return {"fold": fold, "train_sample_ids": [int(i) for i, f in zip(ids, folds) if f != fold],
            "holdout": {"sample_id": held, "label": [0] * len(held), "margin": [margin_of(i) for i in held]}}


def test_each_sample_gets_the_score_of_the_run_that_held_it_out():
    ids, folds = np.arange(10, 20), np.array([0, 1, 2] * 3 + [0])
    runs = {"a": [_fold_run(k, ids, folds, lambda i, k=k: 100 * k + i) for k in range(3)]}
    features = assemble(ids, folds, runs)
    assert features[:, 0].tolist() == [100 * f + i for i, f in zip(ids, folds)]


def test_a_leaked_sample_is_refused():
    ids, folds = np.arange(6), np.array([0, 1] * 3)
    bad = _fold_run(0, ids, folds, float)
    bad["train_sample_ids"].append(0)  # sample 0 is in fold 0 and was trained on by the fold-0 run
    with pytest.raises(DataError, match="were in that run's training data"):
        assemble(ids, folds, {"a": [bad, _fold_run(1, ids, folds, float)]})
    short = _fold_run(1, ids, folds, float)
    short["holdout"]["sample_id"].pop()
    with pytest.raises(DataError, match="no out-of-fold score"):
        assemble(ids, folds, {"a": [_fold_run(0, ids, folds, float), short]})


def test_base_runs_take_the_fusion_data_and_keep_their_tokenizer():
    cfg = config.load("devign-fusion", ["data.source=synthetic", "data.folds=3",
                                        "model.fusion.base_overrides=[train.epochs=1]"])
    b = base_config(cfg, cfg.model.fusion.bases[0], 2)
    assert b.model.track == "gnn" and b.data.source == "synthetic" and b.data.folds == 3 and b.data.holdout_fold == 2
    assert b.run.name == "devign-fusion-gnn-fold2" and b.train.epochs == 1 and b.model.gnn.hidden == 128


def test_stackers_and_the_weighted_average_baseline():
    x = torch.randn(5, 2)
    assert Stacker(2, "logistic", 4)(x)[0].shape == (5, 2) and Stacker(2, "mlp", 4)(x)[0].shape == (5, 2)
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    good, noise = (2 * y - 1) * 2 + rng.normal(size=200), rng.normal(size=200)
    oof = np.stack([good, noise], 1)
    s = config.load("devign-fusion").model.fusion
    report = baseline(s, ["good", "noise"], oof, y, oof, y, oof, y)
    assert report["weights"]["good"] > 0.9 and report["bases"]["good"]["oof_roc_auc"] > 0.9
    assert report["weighted_average"]["test"]["roc_auc"] > 0.9
