"""`streamguard data prepare|stats` and the Ray job entrypoint, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHARED, cli_env
from tests.integration.helpers import read_json, run_cli


def test_prepare_then_stats_then_train_on_prepared(tmp_path):
    out = tmp_path / "prepared"
    proc = run_cli("data", "prepare", "--source", "synthetic:240", "--out", str(out), "--workers", "2")
    assert "splits" in proc.stdout and "parse tiers" in proc.stdout
    manifest = read_json(out / "manifest.json")
    assert manifest["counts"]["input"] == 240
    again = run_cli("data", "prepare", "--source", "synthetic:240", "--out", str(out))
    assert "up to date" in again.stderr
    stats = run_cli("data", "stats", str(out))
    assert "graph size" in stats.stdout and "recommended batch size" in stats.stdout
    run_cli("train", "--output", str(tmp_path / "runs"), f"data.source=prepared:{out}", "train.epochs=1",
            "model.gnn.hidden=16", "metrics.plots=false")
    info = read_json(tmp_path / "runs" / "quickstart" / "run_info.json")
    assert info["data"]["prepared"] == str(out)


def test_prepare_reports_bad_source_in_one_line(tmp_path):
    proc = run_cli("data", "prepare", "--source", "bigvul:/no/file.csv", "--out", str(tmp_path / "x"), check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.skipif(not (SHARED / "data" / "devign" / "valid.jsonl.gz").exists(), reason="../shared/data/devign absent")
def test_prepare_real_devign_slice(tmp_path):
    out = tmp_path / "devign"
    run_cli("data", "prepare", "--source", f"devign:{SHARED}/data/devign/valid.jsonl.gz", "--out", str(out),
            "data.limit=400", timeout=600)
    m = read_json(out / "manifest.json")
    assert m["counts"]["input"] == 400
    assert m["tier_rates"]["full"] > 0.7
    assert m["graph_stats"]["nodes"]["p95"] > m["graph_stats"]["nodes"]["p50"]


@pytest.mark.timeout(600)
def test_ray_job_entrypoint_prepares_with_ray_data(tmp_path):
    out = tmp_path / "ray-prepared"
    import tempfile

    # a short private temp dir: Ray's socket paths must stay under 107 bytes
    env = cli_env(RAY_TMPDIR=tempfile.mkdtemp(prefix="sgray", dir="/tmp"))
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "ray_jobs/preprocess.py", "--source", "synthetic:120", "--out", str(out),
                           "data.tokenizer=null"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["input"] == 120 and m["tokenizer"] is None


@pytest.mark.skipif(not (SHARED / "data" / "devign" / "train.jsonl.gz").exists(), reason="../shared/data/devign absent")
def test_devign_gnn_preset_runs_a_few_steps(tmp_path):
    """The shipped devign-gnn preset as is, on a small slice of its own data."""
    run_cli("train", "--preset", "devign-gnn", "--output", str(tmp_path), "data.limit=300", "train.epochs=1",
            "checkpoint.every_n_steps=2", "metrics.plots=false", timeout=600)
    metrics = read_json(tmp_path / "devign-gnn" / "metrics.json")
    assert metrics["n_samples"] > 0 and metrics["track"] == "gnn"
    assert read_json(tmp_path / "devign-gnn" / "run_info.json")["data"]["counts"]["valid"]["n"] == 300
