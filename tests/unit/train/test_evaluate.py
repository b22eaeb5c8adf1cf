"""Tests for streamguard.train.evaluate (the shared metrics.json schema)."""

from __future__ import annotations

import json
import math
import re
import sys
import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from streamguard.train.evaluate import (
    EXTERNAL_THRESHOLD_KEYS,
    METRIC_KEYS,
    THRESHOLDS,
    compute_metrics,
    f1_for_early_stopping,
    write_metrics_json,
)


def _data(n: int = 2000, seed: int = 0, sep: float = 0.25, pos_rate: float = 0.3):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < pos_rate).astype(int)
    p = np.clip(rng.normal(0.4 + sep * y, 0.2), 0.0, 1.0)
    return y, p


def _sk_at(y, p, t):
    pred = (p >= t).astype(int)
    return {
        "f1": f1_score(y, pred, zero_division=0),
        "precision": precision_score(y, pred, zero_division=0),
        "recall": recall_score(y, pred, zero_division=0),
        "accuracy": accuracy_score(y, pred),
        "balanced_accuracy": balanced_accuracy_score(y, pred),
        "cm": confusion_matrix(y, pred, labels=[0, 1]).ravel().tolist(),
    }


def _cm_list(cm: dict) -> list[int]:
    return [cm["tn"], cm["fp"], cm["fn"], cm["tp"]]


# --------------------------------------------------------------------------- schema


def test_thresholds_are_exactly_0_30_to_0_70():
    assert THRESHOLDS.shape == (41,)
    assert THRESHOLDS.tolist() == [round(0.30 + 0.01 * i, 2) for i in range(41)]
    assert THRESHOLDS[0] == 0.30 and THRESHOLDS[-1] == 0.70 and 0.5 in THRESHOLDS.tolist()


def test_all_metric_keys_present():
    y, p = _data()
    m = compute_metrics(y, p)
    assert set(METRIC_KEYS) <= set(m)
    assert len(METRIC_KEYS) == len(set(METRIC_KEYS))
    for key in EXTERNAL_THRESHOLD_KEYS:
        assert key in METRIC_KEYS
        assert m[key] is None  # no external threshold given
    for key in (
        "n_samples", "n_positive", "positive_rate", "f1_at_0_5", "precision_at_0_5",
        "recall_at_0_5", "accuracy_at_0_5", "balanced_accuracy_at_0_5",
        "best_threshold_by_f1", "f1_at_best_threshold", "precision_at_best_threshold",
        "recall_at_best_threshold", "accuracy_at_best_threshold",
        "balanced_accuracy_at_best_threshold", "roc_auc", "pr_auc",
        "confusion_matrix_threshold_0_5", "confusion_matrix_best_threshold",
        "threshold_sweep", "predicted_positive_rate_at_0_5", "warnings", "timestamp",
    ):
        assert key in METRIC_KEYS
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", m["timestamp"])


def test_counts_and_rates():
    y, p = _data(n=1000, seed=3)
    m = compute_metrics(y.tolist(), p.tolist())  # plain lists are accepted
    assert m["n_samples"] == 1000
    assert m["n_positive"] == int(y.sum())
    assert m["n_negative"] == 1000 - int(y.sum())
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert m["predicted_positive_rate_at_0_5"] == pytest.approx((p >= 0.5).mean())
    assert all(type(v) is int for v in m["confusion_matrix_threshold_0_5"].values())
    assert sum(m["confusion_matrix_threshold_0_5"].values()) == 1000


# --------------------------------------------------------------------------- vs sklearn


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("decimals", [None, 2, 1])  # rounding creates many tied scores
def test_matches_sklearn(seed, decimals):
    y, p = _data(n=1500, seed=seed, pos_rate=0.2 + 0.15 * seed)
    if decimals is not None:
        p = np.round(p, decimals)
    m = compute_metrics(y, p)

    sk = _sk_at(y, p, 0.5)
    for key in ("f1", "precision", "recall", "accuracy", "balanced_accuracy"):
        assert m[f"{key}_at_0_5"] == pytest.approx(sk[key], abs=1e-12), key
    assert _cm_list(m["confusion_matrix_threshold_0_5"]) == sk["cm"]

    best = m["best_threshold_by_f1"]
    sk = _sk_at(y, p, best)
    for key in ("f1", "precision", "recall", "accuracy", "balanced_accuracy"):
        assert m[f"{key}_at_best_threshold"] == pytest.approx(sk[key], abs=1e-12), key
    assert _cm_list(m["confusion_matrix_best_threshold"]) == sk["cm"]

    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)


def test_sweep_matches_sklearn_at_every_threshold():
    y, p = _data(n=800, seed=7)
    m = compute_metrics(y, p)
    sweep = m["threshold_sweep"]
    assert len(sweep) == 41
    assert [r["threshold"] for r in sweep] == THRESHOLDS.tolist()
    for row in sweep:
        assert set(row) == {"threshold", "f1", "precision", "recall", "accuracy",
                            "balanced_accuracy"}
        sk = _sk_at(y, p, row["threshold"])
        for key in ("f1", "precision", "recall", "accuracy", "balanced_accuracy"):
            assert row[key] == pytest.approx(sk[key], abs=1e-12), (row["threshold"], key)


def test_prob_equal_to_threshold_is_positive():
    y = [0, 1, 0, 1]
    p = [0.5, 0.5, 0.49, 0.3]
    m = compute_metrics(y, p)
    assert m["confusion_matrix_threshold_0_5"] == {"tn": 1, "fp": 1, "fn": 1, "tp": 1}
    row_030 = m["threshold_sweep"][0]
    assert row_030["threshold"] == 0.30 and row_030["recall"] == 1.0


# --------------------------------------------------------------------------- best threshold


def test_best_threshold_maximises_f1():
    y, p = _data(n=3000, seed=11, sep=0.15)
    m = compute_metrics(y, p)
    f1s = [r["f1"] for r in m["threshold_sweep"]]
    assert m["f1_at_best_threshold"] == max(f1s)
    assert m["f1_at_best_threshold"] >= m["f1_at_0_5"]
    assert m["best_threshold_by_f1"] in THRESHOLDS.tolist()
    assert f1_for_early_stopping(m) == m["f1_at_best_threshold"]


def test_tie_breaks_to_threshold_closest_to_0_5():
    # Perfectly separated with a gap over [0.35, 0.65]: every threshold in (0.35, 0.65]
    # gives F1 = 1, so the pick must be 0.50 itself.
    y = [0, 0, 1, 1]
    p = [0.1, 0.35, 0.651, 0.9]
    m = compute_metrics(y, p)
    assert m["f1_at_best_threshold"] == 1.0
    assert m["best_threshold_by_f1"] == 0.5


def test_tie_breaks_to_closest_to_0_5():
    # Closest: perfect only for thresholds in (0.40, 0.46] -> closest to 0.5 is 0.46.
    m = compute_metrics([0, 1], [0.40, 0.46])
    assert m["best_threshold_by_f1"] == 0.46
    # Closest from above: perfect only for thresholds in (0.55, 0.62] -> 0.56.
    m = compute_metrics([0, 1], [0.55, 0.62])
    assert m["best_threshold_by_f1"] == 0.56
    # Constant F1 everywhere (all probs below 0.30: F1 = 0 at every threshold) -> 0.5.
    m = compute_metrics([0, 1, 1], [0.1, 0.2, 0.05])
    assert m["f1_at_best_threshold"] == 0.0
    assert m["best_threshold_by_f1"] == 0.5


def test_tie_breaks_to_lower_when_equidistant():
    # Two equal F1 maxima at 0.49 and 0.51 with 0.50 worse -> the lower, 0.49.
    import streamguard.train.evaluate as ev

    f1 = np.zeros(41)
    f1[19] = f1[21] = 0.8  # indices of 0.49 and 0.51
    f1[20] = 0.7
    assert THRESHOLDS[ev._best_index(f1)] == 0.49
    # And float noise between mathematically equal F1 values still counts as a tie.
    f1[21] = 0.8 + 1e-15
    assert THRESHOLDS[ev._best_index(f1)] == 0.49
    f1[25] = 0.9
    assert THRESHOLDS[ev._best_index(f1)] == 0.55


# --------------------------------------------------------------------------- warnings / edge


def test_collapsed_warning_for_constant_probs():
    y, _ = _data(n=300)
    m = compute_metrics(y, np.full(300, 0.2))
    assert any("collapsed model: predicts only class 0 for all 300 samples at threshold 0.5"
               in w for w in m["warnings"])
    m = compute_metrics(y, np.full(300, 0.9))
    assert any("predicts only class 1 for all 300 samples" in w for w in m["warnings"])
    assert m["predicted_positive_rate_at_0_5"] == 1.0


def test_no_collapsed_warning_for_good_model():
    y, p = _data(n=500, sep=0.4)
    m = compute_metrics(y, p)
    assert not any("collapsed" in w for w in m["warnings"])
    assert m["warnings"] == []


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_single_class_labels():
    p = np.linspace(0, 1, 50)
    m = compute_metrics(np.zeros(50, dtype=int), p)
    assert m["roc_auc"] is None
    assert m["pr_auc"] is None
    assert m["n_positive"] == 0
    assert m["f1_at_0_5"] == 0.0
    # sklearn semantics: balanced accuracy over present classes = TNR here.
    assert m["balanced_accuracy_at_0_5"] == pytest.approx(
        balanced_accuracy_score(np.zeros(50, int), (p >= 0.5).astype(int))
    )
    assert any("only class 0" in w for w in m["warnings"])
    json.dumps(m, allow_nan=False)

    m = compute_metrics(np.ones(50, dtype=int), p)
    assert m["roc_auc"] is None
    assert m["pr_auc"] == pytest.approx(1.0)
    assert any("only class 1" in w for w in m["warnings"])
    json.dumps(m, allow_nan=False)


def test_single_sample():
    m = compute_metrics([1], [0.7])
    assert m["f1_at_0_5"] == 1.0
    assert m["roc_auc"] is None
    json.dumps(m, allow_nan=False)


def test_accepts_bool_float_labels_and_float32_probs():
    y, p = _data(n=200)
    a = compute_metrics(y.astype(bool), p.astype(np.float32))
    b = compute_metrics(y.astype(float), p.astype(np.float32))
    a.pop("timestamp"), b.pop("timestamp")
    assert a == b


# --------------------------------------------------------------------------- JSON


def _assert_plain(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            assert type(k) is str
            _assert_plain(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_plain(v)
    else:
        assert obj is None or type(obj) in (int, float, str, bool), type(obj)
        if type(obj) is float:
            assert math.isfinite(obj)


@pytest.mark.parametrize("threshold", [None, 0.42])
def test_json_round_trip(threshold):
    y, p = _data(n=400)
    m = compute_metrics(y, p, threshold=threshold)
    _assert_plain(m)
    assert json.loads(json.dumps(m, allow_nan=False)) == m


def test_write_metrics_json_atomic(tmp_path):
    y, p = _data(n=400)
    m = compute_metrics(y, p, threshold=0.45)
    path = tmp_path / "run" / "metrics.json"
    write_metrics_json(path, m)
    text = path.read_text()
    assert json.loads(text) == m
    assert text == json.dumps(m, indent=2, sort_keys=True) + "\n"
    # Overwrite; no tmp files left behind.
    write_metrics_json(path, {**m, "extra": np.float32(0.25), "arr": np.arange(3)})
    assert json.loads(path.read_text())["extra"] == 0.25
    assert [f.name for f in path.parent.iterdir()] == ["metrics.json"]


def test_write_metrics_json_rejects_nan_and_keeps_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics_json(path, {"a": 1})
    with pytest.raises(ValueError):
        write_metrics_json(path, {"a": float("nan")})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["metrics.json"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("labels", "probs", "match"),
    [
        ([], [], "empty"),
        ([0, 1], [0.5], "same length"),
        ([0, 2], [0.1, 0.2], "0 or 1"),
        ([0, -1], [0.1, 0.2], "0 or 1"),
        ([0, 0.5], [0.1, 0.2], "0 or 1"),
        ([0, float("nan")], [0.1, 0.2], "0 or 1"),
        ([0, 1], [0.1, float("nan")], "finite"),
        ([0, 1], [0.1, float("inf")], "finite"),
        ([0, 1], [0.1, 1.2], r"\[0, 1\]"),
        ([0, 1], [-0.1, 0.2], r"\[0, 1\]"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
        ([0, 1], [[0.9, 0.1], [0.2, 0.8]], "1-D"),
        (["a", "b"], [0.1, 0.2], "labels"),
        ([0, 1], ["x", "y"], "probs"),
    ],
)
def test_bad_inputs_raise(labels, probs, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(labels, probs)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "high"])
def test_bad_external_threshold(bad):
    with pytest.raises(ValueError, match="threshold"):
        compute_metrics([0, 1], [0.2, 0.8], threshold=bad)


# --------------------------------------------------------------------------- external threshold


def test_external_threshold_keys():
    y, p = _data(n=1000, seed=5)
    m = compute_metrics(y, p, threshold=0.37)
    assert m["external_threshold"] == 0.37
    sk = _sk_at(y, p, 0.37)
    assert m["f1_at_external_threshold"] == pytest.approx(sk["f1"], abs=1e-12)
    assert m["precision_at_external_threshold"] == pytest.approx(sk["precision"], abs=1e-12)
    assert m["recall_at_external_threshold"] == pytest.approx(sk["recall"], abs=1e-12)
    assert m["accuracy_at_external_threshold"] == pytest.approx(sk["accuracy"], abs=1e-12)
    assert m["balanced_accuracy_at_external_threshold"] == pytest.approx(
        sk["balanced_accuracy"], abs=1e-12
    )
    assert _cm_list(m["confusion_matrix_external_threshold"]) == sk["cm"]
    # Outside the sweep range is allowed (the caller picked it elsewhere).
    m = compute_metrics(y, p, threshold=0.9)
    assert m["external_threshold"] == 0.9
    assert m["confusion_matrix_external_threshold"] == dict(
        zip(("tn", "fp", "fn", "tp"), _sk_at(y, p, 0.9)["cm"])
    )


def test_early_stopping_missing_key():
    with pytest.raises(KeyError, match="f1_at_best_threshold"):
        f1_for_early_stopping({})


# --------------------------------------------------------------------------- speed / imports


def test_fast_on_30k_samples():
    y, p = _data(n=30_000, seed=1)
    compute_metrics(y, p)
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        compute_metrics(y, p)
        best = min(best, time.perf_counter() - t0)
    assert best < 0.25  # ~8 ms on a laptop; generous bound for loaded CI machines


def test_does_not_import_torch_or_matplotlib():
    import subprocess

    code = (
        "import sys, streamguard.train.evaluate; "
        "print('torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    # streamguard.train/__init__ may import torch for other modules; evaluate itself must not.
    src = open(sys.modules["streamguard.train.evaluate"].__file__).read()
    assert not re.search(r"^\s*(import|from)\s+(torch|matplotlib)\b", src, re.M)
    assert out.stdout.split()[1] == "False"
