"""Bootstrap intervals, paired comparisons, McNemar, calibration and breakdowns: pure logic."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from streamguard.evaluation.breakdown import breakdown
from streamguard.evaluation.calibration import calibration
from streamguard.evaluation.stats import (
    _AucPrep,
    binomial_two_sided,
    bootstrap_ci,
    mcnemar,
    mcnemar_counts,
    paired_bootstrap,
    point_metrics,
)
from streamguard.train.evaluate import compute_metrics


@pytest.fixture
def scored():
    rng = np.random.default_rng(7)
    y = (rng.random(800) < 0.4).astype(int)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.18), 0, 1).round(3)  # rounding makes tied scores
    return y, p


def test_point_estimates_are_the_metrics_json_values(scored):
    y, p = scored
    m = compute_metrics(y, p, threshold=0.47)
    est = point_metrics(y, p, 0.47)
    assert est["accuracy"] == pytest.approx(m["accuracy_at_external_threshold"], abs=1e-12)
    assert est["f1"] == pytest.approx(m["f1_at_external_threshold"], abs=1e-12)
    assert est["roc_auc"] == pytest.approx(m["roc_auc"], abs=1e-12)


@pytest.mark.parametrize("stratified", [True, False])
def test_bootstrap_ci_contains_the_estimate_and_is_reproducible(scored, stratified):
    y, p = scored
    a = bootstrap_ci(y, p, threshold=0.47, n_boot=800, seed=11, stratified=stratified)
    for name, m in a["metrics"].items():
        assert m["low"] <= m["estimate"] <= m["high"], (name, m)
        assert 0 < m["high"] - m["low"] < 0.2, (name, m)  # a real interval, not a point
        assert m["replicates"] == 800
    assert bootstrap_ci(y, p, threshold=0.47, n_boot=800, seed=11, stratified=stratified) == a
    other = bootstrap_ci(y, p, threshold=0.47, n_boot=800, seed=12, stratified=stratified)
    assert other["metrics"]["f1"]["low"] != a["metrics"]["f1"]["low"]
    assert a["threshold"] == 0.47 and a["seed"] == 11 and a["stratified"] is stratified


def test_bootstrap_interval_shrinks_with_more_samples():
    rng = np.random.default_rng(0)

    def width(n):
        y = (rng.random(n) < 0.5).astype(int)
        p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
        m = bootstrap_ci(y, p, n_boot=500, seed=0)["metrics"]["roc_auc"]
        return m["high"] - m["low"]

    assert width(4000) < width(250) / 2


def test_weighted_auc_equals_sklearn_on_an_explicit_resample(scored):
    y, p = scored
    rng = np.random.default_rng(3)
    counts = np.bincount(rng.integers(0, y.size, y.size), minlength=y.size)
    idx = np.repeat(np.arange(y.size), counts)
    assert _AucPrep(y, p)(counts[None, :])[0] == pytest.approx(roc_auc_score(y[idx], p[idx]), abs=1e-12)


def test_unstratified_single_class_replicates_are_dropped_from_auc():
    y, p = np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9])
    r = bootstrap_ci(y, p, n_boot=400, seed=0, stratified=False)["metrics"]["roc_auc"]
    assert 230 < r["replicates"] < 320  # (3/4)^4 = 32% of them draw no positive: about 274 kept


def test_paired_bootstrap_of_a_model_against_itself_is_zero(scored):
    y, p = scored
    r = paired_bootstrap(y, p, p, threshold_a=0.5, threshold_b=0.5, n_boot=300, seed=1)
    for m in r["metrics"].values():
        assert m["difference"] == 0 and m["low"] == 0 and m["high"] == 0 and m["p_value"] == 1.0


def test_paired_bootstrap_sees_a_clearly_better_model(scored):
    y, p = scored
    rng = np.random.default_rng(5)
    better = np.clip(0.2 + 0.6 * y + rng.normal(0, 0.1, y.size), 0, 1)
    r = paired_bootstrap(y, p, better, n_boot=500, seed=2)
    for m in r["metrics"].values():
        assert m["difference"] > 0 and m["low"] > 0 and m["p_value"] < 0.01
    assert r["method"].startswith("paired")


def test_mcnemar_textbook_values():
    # Agresti, Categorical Data Analysis: presidential approval, b = 150, c = 86. With the
    # continuity correction: (|150 - 86| - 1)^2 / 236 = 16.82, p = 4.1e-5.
    r = mcnemar_counts(150, 86)
    assert r["method"] == "chi-square with continuity correction"
    assert r["statistic"] == pytest.approx(63 ** 2 / 236) == pytest.approx(16.8178, abs=1e-4)
    assert r["p_value"] == pytest.approx(4.1146e-5, rel=1e-3)
    # Small discordant counts: exact binomial, b = 1, c = 9: 2 * (1 + 10) / 2^10.
    r = mcnemar_counts(1, 9)
    assert r["method"] == "exact binomial" and r["p_value"] == 22 / 1024
    assert mcnemar_counts(5, 5)["p_value"] == 1.0
    assert mcnemar_counts(0, 0)["p_value"] == 1.0
    # Equal discordant counts above the exact range: the corrected statistic is 0.
    assert mcnemar_counts(30, 30)["p_value"] == 1.0


def test_mcnemar_agrees_with_scipy():
    from scipy.stats import binomtest, chi2

    for b, c in [(0, 7), (3, 12), (11, 13), (24, 0), (25, 10), (40, 61), (200, 180)]:
        r = mcnemar_counts(b, c)
        if b + c < 25:
            assert r["p_value"] == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)
        else:
            assert r["p_value"] == pytest.approx(chi2.sf((abs(b - c) - 1) ** 2 / (b + c), 1), rel=1e-9)


def test_mcnemar_counts_discordant_pairs_from_correctness():
    a = np.array([1, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    b = np.array([1, 0, 0, 1, 0, 1, 0, 0], dtype=bool)
    r = mcnemar(a, b)
    assert (r["b"], r["c"], r["n"], r["discordant"]) == (3, 1, 8, 4)
    assert r["p_value"] == pytest.approx(binomial_two_sided(1, 4)) == 0.625


def test_calibration_by_hand():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0, 0.55])
    cal = calibration(y, p, bins=2)
    low, high = cal["table"]
    assert (low["n"], high["n"]) == (3, 3)  # 1.0 falls in the last bin
    assert low["confidence"] == pytest.approx(0.35 / 3) and low["observed"] == pytest.approx(1 / 3)
    assert high["confidence"] == pytest.approx(2.5 / 3) and high["observed"] == pytest.approx(2 / 3)
    expected = 0.5 * abs(1 / 3 - 0.35 / 3) + 0.5 * abs(2 / 3 - 2.5 / 3)
    assert cal["ece"] == pytest.approx(expected)
    assert cal["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_calibrated_scores_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert calibration(y, p)["ece"] < 0.02
    assert calibration(y, p ** 3)["ece"] > 0.1


def test_breakdown_counts_every_cwe_of_a_sample():
    y = np.array([1, 0, 1, 1])
    p = np.array([0.9, 0.2, 0.3, 0.8])
    rows = {r["group"]: r for r in breakdown(y, p, ["CWE-1,CWE-2", "", "CWE-2", "CWE-1"], threshold=0.5, multi=True)}
    assert rows["CWE-1"]["n"] == 2 and rows["CWE-1"]["recall"] == 1.0
    assert rows["CWE-2"]["n"] == 2 and rows["CWE-2"]["recall"] == 0.5
    assert rows["(none)"]["n"] == 1 and rows["(none)"]["recall"] is None and rows["(none)"]["roc_auc"] is None
    assert math.isclose(rows["CWE-2"]["accuracy"], 0.5)
