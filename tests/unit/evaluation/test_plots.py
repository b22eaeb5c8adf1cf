"""Tests for streamguard.evaluation.plots: every function writes a real PNG."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from streamguard.evaluation.plots import (
    plot_confusion_matrix,
    plot_history,
    plot_pr,
    plot_roc,
    plot_threshold_sweep,
    save_report_plots,
)
from streamguard.train.evaluate import compute_metrics

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = open(path, "rb").read()
    assert len(data) > 1000, f"{path} is suspiciously small ({len(data)} bytes)"
    assert data[:8] == PNG_SIGNATURE


def _no_tmp_files(directory):
    assert not [f.name for f in directory.iterdir() if f.name.endswith(".tmp")]


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = (rng.random(600) < 0.3).astype(int)
    p = np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0, 1)
    return y, p


HISTORY = [
    {"epoch": 1, "train_loss": 0.69, "val_loss": 0.68, "val_f1": 0.41, "lr": 1e-3,
     "samples_per_s": 900.0},
    {"epoch": 2, "train_loss": 0.61, "val_loss": None, "val_f1": None, "lr": 1e-3,
     "samples_per_s": 950.0},
    {"epoch": 3, "train_loss": 0.55, "val_loss": 0.58, "val_f1": 0.52, "lr": 5e-4,
     "samples_per_s": 940.0},
]


def test_confusion_matrix(tmp_path):
    path = tmp_path / "cm.png"
    plot_confusion_matrix({"tn": 50, "fp": 7, "fn": 12, "tp": 31}, path, title="Test CM")
    _assert_png(path)
    _no_tmp_files(tmp_path)


def test_confusion_matrix_all_zero_and_bad_keys(tmp_path):
    plot_confusion_matrix({"tn": 0, "fp": 0, "fn": 0, "tp": 0}, tmp_path / "z.png")
    _assert_png(tmp_path / "z.png")
    with pytest.raises(ValueError, match="missing keys"):
        plot_confusion_matrix({"tn": 1, "fp": 2}, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_roc_and_pr(tmp_path, data):
    y, p = data
    plot_roc(y, p, tmp_path / "roc.png")
    plot_pr(y.tolist(), p.tolist(), tmp_path / "pr.png")
    _assert_png(tmp_path / "roc.png")
    _assert_png(tmp_path / "pr.png")
    _no_tmp_files(tmp_path)


@pytest.mark.parametrize("cls", [0, 1])
def test_single_class_does_not_crash(tmp_path, cls):
    y = np.full(40, cls)
    p = np.linspace(0, 1, 40)
    plot_roc(y, p, tmp_path / "roc.png")
    plot_pr(y, p, tmp_path / "pr.png")
    _assert_png(tmp_path / "roc.png")
    _assert_png(tmp_path / "pr.png")
    paths = save_report_plots(tmp_path / "rep", y, p, compute_metrics(y, p), None)
    for path in paths.values():
        _assert_png(path)


def test_bad_input_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        plot_roc([0, 1], [0.5], tmp_path / "roc.png")
    assert list(tmp_path.iterdir()) == []


def test_history(tmp_path):
    plot_history(HISTORY, tmp_path / "h.png")
    _assert_png(tmp_path / "h.png")


@pytest.mark.parametrize(
    "history",
    [
        [{"epoch": 1, "train_loss": 0.7, "val_loss": None, "val_f1": None}],
        [{"epoch": e, "train_loss": None, "val_loss": None, "val_f1": None, "lr": None,
          "samples_per_s": None} for e in range(1, 4)],
        [{"train_loss": 0.5}],  # missing keys
        [],
    ],
)
def test_history_with_none_values(tmp_path, history):
    plot_history(history, tmp_path / "h.png")
    _assert_png(tmp_path / "h.png")


def test_threshold_sweep(tmp_path, data):
    y, p = data
    sweep = compute_metrics(y, p)["threshold_sweep"]
    plot_threshold_sweep(sweep, tmp_path / "s.png")
    _assert_png(tmp_path / "s.png")
    plot_threshold_sweep([], tmp_path / "empty.png")
    _assert_png(tmp_path / "empty.png")


def test_save_report_plots(tmp_path, data):
    y, p = data
    metrics = compute_metrics(y, p)
    out = tmp_path / "nested" / "report"  # created if missing
    paths = save_report_plots(out, y, p, metrics, HISTORY)
    expected = {
        "confusion_matrix_0_5": "confusion_matrix_0_5.png",
        "confusion_matrix_best": "confusion_matrix_best.png",
        "roc": "roc.png",
        "pr": "pr.png",
        "threshold_sweep": "threshold_sweep.png",
        "training_curves": "training_curves.png",
    }
    assert set(paths) == set(expected)
    for name, filename in expected.items():
        assert paths[name] == str(out / filename)
        _assert_png(paths[name])
    assert sorted(f.name for f in out.iterdir()) == sorted(expected.values())


def test_save_report_plots_without_history(tmp_path, data):
    y, p = data
    paths = save_report_plots(tmp_path, y, p, compute_metrics(y, p), None)
    assert "training_curves" not in paths
    assert len(paths) == 5
    assert not (tmp_path / "training_curves.png").exists()


def test_no_figure_leak(tmp_path):
    # No pyplot registry is involved, so figures must be collectable after many calls.
    import matplotlib.figure

    before = sum(isinstance(o, matplotlib.figure.Figure) for o in gc.get_objects())
    for i in range(8):
        plot_confusion_matrix({"tn": i, "fp": 1, "fn": 2, "tp": 3}, tmp_path / "cm.png")
    gc.collect()
    after = sum(isinstance(o, matplotlib.figure.Figure) for o in gc.get_objects())
    assert after - before <= 1
    import sys

    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []
