"""End-to-end training through the real CLI on the embedded synthetic dataset."""

from __future__ import annotations

import signal
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from streamguard.train.evaluate import METRIC_KEYS
from tests.conftest import REPO, cli_env
from tests.integration.helpers import TINY, committed, read_json, run_cli, sg, wait_for


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The real quickstart preset, unchanged except for where it writes."""
    out = tmp_path_factory.mktemp("qs")
    proc = run_cli("train", "--preset", "quickstart", "--output", str(out), timeout=900)
    return out / "quickstart", proc


def test_quickstart_learns_the_synthetic_task(quickstart_run):
    run, proc = quickstart_run
    metrics = read_json(run / "metrics.json")
    assert metrics["split"] == "test" and metrics["n_samples"] >= 200
    assert metrics["f1_at_best_threshold"] >= 0.9, metrics
    assert metrics["f1_at_external_threshold"] >= 0.85, "the validation threshold must transfer to test"
    assert metrics["roc_auc"] >= 0.93
    assert not metrics["warnings"]


def test_quickstart_writes_every_artefact(quickstart_run):
    run, proc = quickstart_run
    assert set(METRIC_KEYS) <= set(read_json(run / "metrics.json"))
    history = read_json(run / "history.json")
    assert history and {"epoch", "train_loss", "val_loss", "val_f1", "lr", "samples_per_s"} <= set(history[0])
    for png in ("confusion_matrix_0_5", "confusion_matrix_best", "roc", "pr", "training_curves"):
        assert (run / "plots" / f"{png}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpts = committed(run / "checkpoints")
    assert ckpts, "no committed checkpoint"
    assert (run / "checkpoints" / ckpts[-1] / "config.yaml").read_text() == (run / "config.yaml").read_text()
    info = read_json(run / "run_info.json")
    assert info["versions"]["torch"] and info["seed"] == 0
    assert len(next(iter(info["data"]["sources"].values()))) == 64  # sha256 of the dataset
    # the closing lines tell the user where everything is
    assert "metrics:" in proc.stdout and "plots:" in proc.stdout and "checkpoints:" in proc.stdout


def test_evaluate_scores_the_run(quickstart_run, tmp_path):
    run, _ = quickstart_run
    proc = run_cli("evaluate", str(run), "--output", str(tmp_path / "ev"))
    metrics = read_json(tmp_path / "ev" / "metrics.json")
    assert metrics["f1_at_external_threshold"] == pytest.approx(read_json(run / "metrics.json")["f1_at_external_threshold"])
    assert (tmp_path / "ev" / "plots" / "roc.png").exists()
    assert "F1" in proc.stdout


def test_evaluate_on_other_devign_format_data(quickstart_run, tmp_path):
    import json

    from streamguard.data.synthetic import generate_samples

    data = tmp_path / "other.jsonl"
    data.write_text("\n".join(json.dumps({"func": r["func"], "target": r["target"], "idx": i, "project": "x"})
                              for i, r in enumerate(generate_samples(120, seed=99))))
    run, _ = quickstart_run
    run_cli("evaluate", str(run), "--data", f"devign:{data}", "--output", str(tmp_path / "ev2"))
    assert read_json(tmp_path / "ev2" / "metrics.json")["n_samples"] == 120


def test_sigkill_then_same_command_resumes(tmp_path):
    args = ["train", "--output", str(tmp_path), "run.name=killed", *TINY, "checkpoint.every_n_steps=4"]
    proc = subprocess.Popen(sg(*args), cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt_dir = tmp_path / "killed" / "checkpoints"
    wait_for(lambda: len(committed(ckpt_dir)) >= 2, what="two checkpoints", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not (tmp_path / "killed" / "metrics.json").exists()
    resumed = run_cli(*args)
    assert "resuming from checkpoint step_" in resumed.stderr
    assert "epoch" in resumed.stderr.split("resuming from checkpoint")[1].splitlines()[0]
    assert read_json(tmp_path / "killed" / "metrics.json")["n_samples"] > 0
    assert len(read_json(tmp_path / "killed" / "history.json")) == 3


def _weights(run_dir):
    last = committed(run_dir / "checkpoints")[-1]
    return load_file(run_dir / "checkpoints" / last / "model.safetensors")


def test_sigterm_checkpoints_at_step_boundary_and_resume_is_equivalent(tmp_path):
    """A preemption notice mid-epoch, then a restart, ends with the same weights as an
    uninterrupted run: no sample skipped or repeated, optimizer/scheduler/RNG restored."""
    base = ["train", "--output", str(tmp_path), *TINY, "run.deterministic=true", "checkpoint.every_n_steps=3"]
    run_cli(*base, "run.name=straight")

    proc = subprocess.Popen(sg(*base, "run.name=noticed"), cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(committed(tmp_path / "noticed" / "checkpoints")) >= 2, what="checkpoints", proc=proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "received SIGTERM" in err and "preempted at epoch" in err
    state = read_json(tmp_path / "noticed" / "checkpoints" / committed(tmp_path / "noticed" / "checkpoints")[-1] / "state.json")
    assert not state["completed"]

    resumed = run_cli(*base, "run.name=noticed")
    assert "resuming from checkpoint" in resumed.stderr
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "noticed")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
    keys = ("epoch", "global_step", "train_loss", "val_loss", "val_f1", "lr")
    straight, noticed = read_json(tmp_path / "straight" / "history.json"), read_json(tmp_path / "noticed" / "history.json")
    assert len(straight) == len(noticed) == 3
    flat = lambda rows: [r[k] for r in rows for k in keys]  # noqa: E731
    assert flat(noticed) == pytest.approx(flat(straight), rel=1e-5)


def test_corrupt_newest_checkpoint_falls_back_with_warning(tmp_path):
    args = ["train", "--output", str(tmp_path), "run.name=corrupt", *TINY, "train.epochs=2"]
    run_cli(*args)
    ckpts = committed(tmp_path / "corrupt" / "checkpoints")
    newest = tmp_path / "corrupt" / "checkpoints" / ckpts[-1] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated safetensors
    proc = run_cli(*args[:-1], "train.epochs=3")
    assert f"skipping checkpoint {ckpts[-1]}" in proc.stderr
    assert f"resuming from checkpoint {ckpts[-2]}" in proc.stderr
    assert len(read_json(tmp_path / "corrupt" / "history.json")) == 3


def test_checkpoint_without_manifest_is_ignored(tmp_path):
    args = ["train", "--output", str(tmp_path), "run.name=nomanifest", *TINY, "train.epochs=1"]
    run_cli(*args)
    ckpt_dir = tmp_path / "nomanifest" / "checkpoints"
    newest = ckpt_dir / committed(ckpt_dir)[-1]
    (newest / "MANIFEST.json").unlink()
    proc = run_cli(*args[:-1], "train.epochs=2")
    assert f"skipping checkpoint {newest.name}" in proc.stderr
