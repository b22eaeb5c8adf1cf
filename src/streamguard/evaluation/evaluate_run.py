"""`streamguard evaluate`: score a finished run's best checkpoint on its own test split or
on another dataset, with the threshold the run picked on its validation split.

Besides metrics.json (the shared schema, plus bootstrap 95% intervals and calibration
summaries), predictions.json and the standard plots, it writes

    breakdown.json        metrics per project and per CWE, where the data carries them
    calibration.json      reliability bins, ECE, MCE, Brier score
    plots/reliability.png the reliability diagram
    report.md             Markdown report (relative image links)
    report.html           the same, self-contained (PNGs embedded as base64)
"""

from __future__ import annotations

import json
import logging
import re

import yaml

from streamguard import checkpoint
from streamguard.config import Config
from streamguard.data.dataset import load_spec, load_splits
from streamguard.errors import CheckpointError, ConfigError, StorageError
from streamguard.evaluation.report import write_report
from streamguard.registry import get_track
from streamguard.rundir import RunDir
from streamguard.runtime import pick_device
from streamguard.tracks.common import build
from streamguard.train.step import predict

log = logging.getLogger(__name__)


def _split_uri(uri: str) -> tuple[str, str]:
    """`runs/quickstart` -> ("runs", "quickstart"); `s3://b/p/run` -> ("s3://b/p", "run")."""
    parent, sep, name = uri.rstrip("/").rpartition("/")
    return (parent if sep else "."), name


def evaluate_run(run_dir: str, *, data: str | None = None, output: str | None = None, n_boot: int = 2000,
                 seed: int = 0) -> tuple[str, dict]:
    run = RunDir(*_split_uri(run_dir))
    try:
        cfg = Config.from_dict(yaml.safe_load(run.storage.read_bytes("config.yaml")))
    except StorageError:
        raise StorageError(f"{run_dir} is not a StreamGuard run directory (no config.yaml); "
                           "pass the directory `streamguard train` printed") from None
    d = cfg.data
    track = get_track(cfg.model.track)
    try:  # the CWE head was trained on the run's own label list
        cwe_labels = json.loads(run.storage.read_bytes("run_info.json"))["data"].get("cwe_labels")
    except (StorageError, ValueError, KeyError):
        cwe_labels = None
    if track.load_data is not None:  # derived features (fusion): from the run's own base runs
        if data:
            raise ConfigError(f"`evaluate --data` is not available for the {track.name} track: its features come "
                              "from the base runs' fold predictions; evaluate the base runs instead")
        from streamguard.runtime import LocalRuntime

        splits = track.load_data(cfg, LocalRuntime(run.checkpoints(keep_last=1, keep_best=False), device="cpu"))
        graphs, info, split = splits.test, splits.info, "test"
    elif data:
        graphs, info = load_spec(data, d, seed=cfg.run.seed, cwe_labels=cwe_labels)
        split = re.sub(r"[^A-Za-z0-9._-]+", "_", data.split("/")[-1])
    else:
        splits = load_splits(d, seed=cfg.run.seed, storage_options=cfg.storage.model_dump())
        graphs, info, split = splits.test, splits.info, "test"
    if cwe_labels is not None and track.load_data is None:
        info.cwe_labels = cwe_labels
    model = build(track, cfg.model, info)
    best = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best).best_valid()
    if best is None:
        raise CheckpointError(f"{run_dir}: no valid checkpoint to evaluate")
    checkpoint.load_for_scoring(best, model=model)
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
    from streamguard.evaluation.calibration import calibration
    from streamguard.evaluation.stats import bootstrap_ci

    cal = calibration(labels, probs)
    metrics = write_report(out, labels=labels, probs=probs, sample_ids=ids, split=split, threshold=threshold,
                           history=None, plots=True,  # the report embeds them
                           extra={"track": cfg.model.track, "run": cfg.run.name, "checkpoint": best.name,
                                  "data": data or "test split",
                                  "confidence_intervals": bootstrap_ci(labels, probs, threshold=threshold,
                                                                       n_boot=n_boot, seed=seed),
                                  "calibration": {k: cal[k] for k in ("bins", "ece", "mce", "brier")}})
    from streamguard.evaluation.evaluation_report import write_evaluation_report

    write_evaluation_report(out, metrics=metrics, labels=labels, probs=probs, ids=ids, samples=graphs,
                            calibration_table=cal, threshold=threshold)
    return out.display("metrics.json"), metrics
