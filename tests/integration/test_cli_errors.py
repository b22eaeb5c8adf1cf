"""Every bad input exits non-zero with one line naming the problem."""

import pytest

from tests.integration.helpers import run_cli


@pytest.mark.parametrize("args, message", [
    (["train", "optim.lrr=0.1"], "error: unknown key 'optim.lrr'; allowed keys in optim:"),
    (["train", "train.epochs=three"], "error: train.epochs: Input should be a valid integer"),
    (["train", "--preset", "nope"], "error: unknown preset 'nope'; available presets:"),
    (["train", "model.track=transformerz"], "error: model.track: unknown track 'transformerz'; known tracks: fusion, gnn, hybrid, transformer"),
    (["train", "data.source=devign:/no/such/file.jsonl"], "error: cannot read data file '/no/such/file.jsonl'"),
    (["train", "data.source=kaggle:x"], "error: unknown data source kind 'kaggle'"),
    (["evaluate", "/no/such/run"], "error: /no/such/run is not a StreamGuard run directory"),
])
def test_bad_input(args, message, tmp_path):
    output = ["--output", str(tmp_path)] if args[0] == "train" else []
    proc = run_cli(*args, *output, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_help_is_useful():
    out = run_cli("train", "--help").stdout
    assert "--preset" in out and "section.key=value" in out and "resumes" in out
    out = run_cli("presets", "--keys").stdout
    assert "quickstart" in out and "devign-gnn" in out and "optim.lr" in out
