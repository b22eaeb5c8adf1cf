"""Every track end to end: the quickstart with model.track=<name> through the real CLI (with
checkpoint and resume), every shipped preset for a few steps, fusion's out-of-fold
guarantee, the multi-task metrics, `data augment` into GNN features, and exact mid-epoch
resume with EMA, gradient accumulation and weighted sampling."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from streamguard import config
from streamguard.train.evaluate import METRIC_KEYS
from tests.conftest import REPO, SHARED, cli_env
from tests.integration.helpers import committed, read_json, run_cli
from tests.models import minilm_dir, tiny_roberta

TINY = ["data.synthetic_size=160", "train.batch_size=16", "metrics.plots=false", "train.early_stopping_patience=0"]
TRACK_TINY = {
    "hybrid": ["model.hybrid.gnn.hidden=16", "model.hybrid.gnn.layers=2", "model.hybrid.lstm_hidden=16",
               "model.hybrid.embedding=16", "model.hybrid.max_tokens=64"],
    "transformer": ["data.max_tokens=64", "model.transformer.freeze_layers=5", "train.ema_decay=0.9",
                    "train.grad_accum_steps=2"],
}


@pytest.mark.parametrize("track", ["hybrid", "transformer"])
def test_quickstart_trains_every_track_through_the_cli(track, tmp_path):
    if track == "transformer":
        minilm_dir()  # the quickstart's transformer is the packaged offline MiniLM
    run_cli("train", "--preset", "quickstart", "--output", str(tmp_path), f"model.track={track}", *TINY,
            *TRACK_TINY[track], "train.epochs=1", timeout=600)
    run = tmp_path / "quickstart"
    metrics = read_json(run / "metrics.json")
    assert set(METRIC_KEYS) <= set(metrics) and metrics["track"] == track
    assert committed(run / "checkpoints")
    if track == "transformer":
        assert (run / "checkpoints" / committed(run / "checkpoints")[-1] / "ema.safetensors").exists()


@pytest.mark.parametrize("track", ["hybrid", "transformer"])
def test_every_track_stops_mid_epoch_and_resumes(track, tmp_path):
    """A preemption notice mid-epoch, then the same run again: it resumes from the step
    checkpoint and finishes with the same metrics.json schema."""
    from streamguard.train.loop import Preempted

    extra = TRACK_TINY["hybrid"] if track == "hybrid" else [
        f"model.transformer.backbone={tiny_roberta(tmp_path / 'roberta')}", "model.transformer.freeze_layers=0",
        "data.max_tokens=64", "train.ema_decay=0.9", "train.grad_accum_steps=2"]
    cfg = config.load("quickstart", [f"model.track={track}", *TINY, *extra, "train.epochs=2",
                                     f"run.storage_path={tmp_path}", "run.name=stopped"])
    with pytest.raises(Preempted):
        train_in_process(cfg, stop_at=3)
    metrics, run = train_in_process(cfg)
    assert metrics["resumes"] and metrics["resumes"][0]["from_step"] == 3
    assert len(read_json(run / "history.json")) == 2 and set(METRIC_KEYS) <= set(metrics)


# ------------------------------------------------------------------ every preset, a few steps


def _needs_shared(cfg) -> bool:
    return any(spec and "../shared" in spec for spec in (cfg.data.source, cfg.data.valid_source))


def preset_overrides(name: str, tmp_path) -> list[str]:
    """Keep a preset as shipped, but small: its own data slice when ../shared is present, else
    the synthetic data; offline stand-ins for backbones that cannot be downloaded here."""
    cfg = config.load(name)
    extra = [f"run.storage_path={tmp_path}", "metrics.plots=false", "train.epochs=1"]
    if _needs_shared(cfg):
        if (SHARED / "data").is_dir():
            extra += [f"data.source={cfg.data.source.replace('../shared', str(SHARED))}",
                      f"data.valid_source={cfg.data.valid_source.replace('../shared', str(SHARED))}",
                      f"data.limit={60 if cfg.model.track == 'transformer' else 120}"]
        else:
            extra += ["data.source=synthetic", "data.valid_source=null", "data.synthetic_size=160",
                      "data.valid_fraction=0.15", "data.limit=null"]
    if cfg.model.track == "transformer" and not cfg.model.transformer.backbone.startswith("pkg:"):
        # codebert cannot be downloaded here: the same preset on a locally built RoBERTa
        extra += [f"model.transformer.backbone={tiny_roberta(tmp_path.parent / 'roberta')}", "data.max_tokens=128"]
    if cfg.model.track == "transformer":
        minilm_dir() if cfg.model.transformer.backbone.startswith("pkg:") else None
    if cfg.model.track == "fusion" and not name.endswith("-quick"):  # the real bases, smaller
        extra += ["data.folds=2", "model.fusion.base_overrides=[train.epochs=1, model.gnn.hidden=32, "
                  "model.gnn.layers=2, model.hybrid.gnn.hidden=32, model.hybrid.lstm_hidden=32, "
                  "model.hybrid.embedding=32]"]
    return extra


def train_in_process(cfg, stop_at: int | None = None):
    """The loop as `streamguard train` runs it, in this process; `stop_at`: a preemption
    notice arrives at that step boundary."""
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime
    from streamguard.train.loop import train

    class StopAt(LocalRuntime):
        calls = 0

        def stop_requested(self):
            self.calls += 1
            return "preemption" if self.calls == stop_at else None

    run = RunDir(cfg.run.storage_path, cfg.run.name)
    rt = (StopAt if stop_at else LocalRuntime)(
        run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best), device="cpu")
    try:
        return train(cfg, rt, run), run.local
    finally:
        rt.close()


SHIPPED = [n for n in config.preset_names() if n != "quickstart"]  # quickstart: test_train_cli.py


@pytest.mark.parametrize("name", SHIPPED)
def test_every_preset_runs_a_few_steps(name, tmp_path):
    cfg = config.load(name, preset_overrides(name, tmp_path))
    metrics, run = train_in_process(cfg)
    assert set(METRIC_KEYS) <= set(metrics) and metrics["track"] == cfg.model.track
    assert committed(run / "checkpoints")
    if cfg.model.cwe_head:
        cwe = metrics["cwe"]
        assert cwe["labels"] and 0.0 <= cwe["micro_f1"] <= 1.0
    if cfg.model.track == "fusion":
        check_out_of_fold(cfg, run, metrics)
        if name.endswith("-quick"):
            check_fusion_consumes_existing_fold_runs(cfg, metrics, tmp_path)


def check_out_of_fold(cfg, run, metrics):
    """Each training sample's stacking feature is the score of the fold run whose training
    data excluded it (read back from the runs' own files)."""
    oof = read_json(run / "oof.json")
    assert set(oof["bases"]) == {b.name for b in cfg.model.fusion.bases}
    assert set(oof["fold"]) == set(range(cfg.data.folds))
    for base in oof["bases"]:
        fold_runs = [read_json(f"{uri}/fold_predictions.json") for uri in oof["runs"][base]]
        for k, fp in enumerate(fold_runs):
            assert fp["fold"] == k
            assert not set(fp["train_sample_ids"]) & set(fp["holdout"]["sample_id"])
        for sid, fold, margin in zip(oof["sample_id"], oof["fold"], oof["margin"][base]):
            fp = fold_runs[fold]
            assert sid not in fp["train_sample_ids"], f"sample {sid} scored by a model trained on it"
            assert margin == pytest.approx(fp["holdout"]["margin"][fp["holdout"]["sample_id"].index(sid)], rel=1e-5)
    report = metrics["fusion"]
    assert set(report["weights"]) == set(oof["bases"]) and "valid" in report["weighted_average"]


def check_fusion_consumes_existing_fold_runs(cfg, first, tmp_path):
    """The fold runs of a first fusion run, listed as `runs:`, are reused without training."""
    runs = first["fusion"]["runs"]
    listed = [{"name": n, "runs": uris[0].replace("fold0", "fold{fold}")} for n, uris in runs.items()]
    data = cfg.to_dict()
    data["run"]["name"] = "consumer"
    data["model"]["fusion"]["bases"] = listed
    second, _ = train_in_process(config.Config.from_dict(data))
    assert second["fusion"]["runs"] == runs and second["fusion"]["weights"] == first["fusion"]["weights"]
    assert not (tmp_path / "consumer-gnn-fold0").exists()


# ------------------------------------------------------------------ encoder features


def test_data_augment_then_gnn_with_cls_features(tmp_path):
    model = tiny_roberta(tmp_path / "roberta")
    prepared, augmented = tmp_path / "p", tmp_path / "aug"
    run_cli("data", "prepare", "--source", "synthetic:120", "--out", str(prepared), "data.max_nodes=512")
    proc = run_cli("data", "augment", str(prepared), "--out", str(augmented), "--encoder", str(model),
                   "--mode", "cls", "--max-tokens", "64")
    assert "train with: data.source=prepared:" in proc.stdout
    cfg = config.load("quickstart", [f"data.source=prepared:{augmented}", "model.gnn.encoder=cls", *TINY,
                                     "model.gnn.hidden=16", "model.gnn.layers=2", "train.epochs=1",
                                     f"run.storage_path={tmp_path}"])
    metrics, run = train_in_process(cfg)
    assert metrics["n_samples"] > 0
    weights = load_file(run / "checkpoints" / committed(run / "checkpoints")[-1] / "model.safetensors")
    assert weights["encoder.cls_proj.weight"].shape == (16, 32)


# ------------------------------------------------------------------ exact resume with the new knobs


def test_mid_epoch_stop_and_resume_is_exact_with_ema_accumulation_and_weighted_sampling(tmp_path):
    from streamguard.train.loop import Preempted

    over = [*TINY, "data.synthetic_size=240", "model.gnn.hidden=16", "model.gnn.layers=2", "train.epochs=2",
            "run.deterministic=true", "train.ema_decay=0.8", "train.grad_accum_steps=2", "train.batch_size=8",
            "train.sample_weights=balanced", "train.weighted_sampling=true", f"run.storage_path={tmp_path}"]

    def go(name, stop_at=None):
        return train_in_process(config.load("quickstart", [*over, f"run.name={name}"]), stop_at=stop_at)[1]

    straight = go("straight")
    with pytest.raises(Preempted):
        go("stopped", stop_at=5)  # mid-epoch 0 (about 11 optimizer steps per epoch)
    resumed = go("stopped")
    for file in ("model.safetensors", "ema.safetensors"):
        a = load_file(straight / "checkpoints" / committed(straight / "checkpoints")[-1] / file)
        b = load_file(resumed / "checkpoints" / committed(resumed / "checkpoints")[-1] / file)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=f"{file}:{key}")
    keys = ("train_loss", "val_loss", "val_f1", "global_step")
    flat = lambda p: [r[k] for r in read_json(p / "history.json") for k in keys]  # noqa: E731
    assert flat(resumed) == pytest.approx(flat(straight), rel=1e-5)


# ------------------------------------------------------------------ DDP: torchrun and Ray


def test_torchrun_ddp_hybrid_with_accumulation_and_ema(tmp_path):
    """Two gloo ranks over graph+token batches, no_sync on the accumulation micro-steps."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "streamguard",
           "train", "--preset", "quickstart", "--output", str(tmp_path), "run.name=ddp", "model.track=hybrid", *TINY,
           *TRACK_TINY["hybrid"], "train.epochs=1", "train.grad_accum_steps=2", "train.ema_decay=0.9"]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert read_json(tmp_path / "ddp" / "run_info.json")["world_size"] == 2
    assert read_json(tmp_path / "ddp" / "metrics.json")["track"] == "hybrid"


@pytest.mark.timeout(900)
def test_ray_train_two_workers_runs_the_transformer_track(tmp_path):
    """`--ray` with 2 CPU workers: the same loop and DDP wiring for token batches (the GNN
    and hybrid batch paths run under torchrun and the distributed tests)."""
    pytest.importorskip("ray")
    import tempfile

    env = cli_env(RAY_TMPDIR=tempfile.mkdtemp(prefix="sgray", dir="/tmp"))  # Ray's socket paths stay short
    env.pop("RAY_ADDRESS", None)
    roberta = tiny_roberta(tmp_path / "roberta")
    run_cli("train", "--ray", "--num-workers", "2", "--preset", "quickstart", "--output", str(tmp_path),
            "run.name=ray-transformer", "model.track=transformer", *TINY, f"model.transformer.backbone={roberta}",
            "model.transformer.freeze_layers=0", "data.max_tokens=64", "train.ema_decay=0.9", "train.epochs=1",
            "train.grad_accum_steps=2", env=env, timeout=600)
    assert read_json(tmp_path / "ray-transformer" / "metrics.json")["track"] == "transformer"
    assert read_json(tmp_path / "ray-transformer" / "run_info.json")["world_size"] == 2
