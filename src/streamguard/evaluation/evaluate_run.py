"""`streamguard evaluate`: score a finished run's best checkpoint on its own test split or
on another dataset, with the threshold the run picked on its validation split."""

from __future__ import annotations

import json
import logging
import re

import yaml

from streamguard import checkpoint
from streamguard.config import Config
from streamguard.data.dataset import load_spec, load_splits
from streamguard.errors import CheckpointError, StorageError
from streamguard.evaluation.report import write_report
from streamguard.registry import get_track
from streamguard.rundir import RunDir
from streamguard.runtime import pick_device
from streamguard.train.step import predict

log = logging.getLogger(__name__)


def _split_uri(uri: str) -> tuple[str, str]:
    """`runs/quickstart` -> ("runs", "quickstart"); `s3://b/p/run` -> ("s3://b/p", "run")."""
    parent, sep, name = uri.rstrip("/").rpartition("/")
    return (parent if sep else "."), name


def evaluate_run(run_dir: str, *, data: str | None = None, output: str | None = None) -> tuple[str, dict]:
    run = RunDir(*_split_uri(run_dir))
    try:
        cfg = Config.from_dict(yaml.safe_load(run.storage.read_bytes("config.yaml")))
    except StorageError:
        raise StorageError(f"{run_dir} is not a StreamGuard run directory (no config.yaml); "
                           "pass the directory `streamguard train` printed") from None
    d = cfg.data
    track = get_track(cfg.model.track)
    if data:
        graphs, info = load_spec(data, d, seed=cfg.run.seed)
        split = re.sub(r"[^A-Za-z0-9._-]+", "_", data.split("/")[-1])
    else:
        splits = load_splits(d, seed=cfg.run.seed, storage_options=cfg.storage.model_dump())
        graphs, info, split = splits.test, splits.info, "test"
    model = track.build_model(getattr(cfg.model, track.config_field), info)
    best = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best).best_valid()
    if best is None:
        raise CheckpointError(f"{run_dir}: no valid checkpoint to evaluate")
    checkpoint.load(best, model=model, restore_rng=False)
    device = pick_device("auto")
    model.to(device)

    threshold = None
    try:
        threshold = json.loads(run.storage.read_bytes("metrics.json")).get("external_threshold")
    except (StorageError, ValueError):
        log.warning("run has no metrics.json: reporting the threshold sweep without the run's threshold")
    labels, probs, ids, _ = predict(model, track.make_loader(graphs, batch_size=cfg.train.eval_batch_size),
                                    forward=track.forward, device=device, dtype=None)
    out = RunDir(*_split_uri(output)) if output else RunDir(run.uri, f"eval-{split}")
    metrics = write_report(out, labels=labels, probs=probs, sample_ids=ids, split=split, threshold=threshold,
                           history=None, plots=cfg.metrics.plots,
                           extra={"track": cfg.model.track, "run": cfg.run.name, "checkpoint": best.name,
                                  "data": data or "test split"})
    return out.display("metrics.json"), metrics
