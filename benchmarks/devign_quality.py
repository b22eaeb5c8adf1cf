"""Model quality on Devign; prints one JSON object.

    python benchmarks/devign_quality.py [--track gnn|transformer|hybrid|fusion] [--output DIR] [key=value ...]

Trains the `devign-<track>` preset (default `gnn`) on ../shared/data/devign/train.jsonl.gz,
validates on valid.jsonl.gz (the preset's `valid_source`), and keeps the run directory
under `--output` (default `runs/benchmarks`), so `streamguard evaluate RUN_DIR --data ...`
can score it on other data later. Extra `key=value` overrides go to the preset (e.g.
`train.epochs=5`). The run is resumable: the same command continues an interrupted run.

Printed keys: track, preset, valid_accuracy and valid_f1 (at threshold 0.5),
valid_f1_best_threshold, valid_roc_auc, test_* (the 10% carved out of train),
train_minutes, epochs, best_step, run_dir, overrides.
Reference accuracies on the official CodeXGLUE test split: CodeBERT 62.08, BiLSTM 59.37,
majority class about 54 (this split is not the official one: see ../shared/README.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEVIGN = REPO.parent / "shared" / "data" / "devign"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--track", default="gnn", help="gnn, transformer, hybrid or fusion (preset devign-<track>)")
    parser.add_argument("--output", default=str(REPO / "runs" / "benchmarks"), help="storage path for the run")
    parser.add_argument("--name", default=None, help="run name (default devign-quality-<track>)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")

    from streamguard import config
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime
    from streamguard.train.loop import train

    if not (DEVIGN / "train.jsonl.gz").exists():
        raise SystemExit(f"error: {DEVIGN}/train.jsonl.gz not found (the Devign data lives in ../shared)")
    name = args.name or f"devign-quality-{args.track}"
    overrides = [f"data.source=devign:{DEVIGN / 'train.jsonl.gz'}", f"data.valid_source=devign:{DEVIGN / 'valid.jsonl.gz'}",
                 *args.overrides, f"run.name={name}", f"run.storage_path={args.output}"]
    cfg = config.load(f"devign-{args.track}", overrides)
    run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())
    store = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best)
    rt = LocalRuntime(store, device=cfg.train.device)
    started = time.time()
    try:
        metrics = train(cfg, rt, run)
    finally:
        rt.close()
    minutes = (time.time() - started) / 60
    history = json.loads(run.path("history.json").read_text())
    v = metrics["validation"]
    result = {
        "track": args.track, "preset": f"devign-{args.track}",
        "valid_accuracy": v["accuracy_at_0_5"], "valid_f1": v["f1_at_0_5"],
        "valid_f1_best_threshold": v["f1_at_best_threshold"], "valid_best_threshold": v["best_threshold_by_f1"],
        "valid_roc_auc": v["roc_auc"],
        "test_split": metrics["split"], "test_accuracy": metrics["accuracy_at_0_5"], "test_f1": metrics["f1_at_0_5"],
        "test_f1_at_valid_threshold": metrics["f1_at_external_threshold"], "test_roc_auc": metrics["roc_auc"],
        "train_minutes": round(minutes, 2), "epochs": len(history), "best_step": metrics.get("best_step"),
        "samples_per_s": round(sum(h["samples_per_s"] for h in history) / max(1, len(history)), 1),
        "run_dir": run.uri, "overrides": args.overrides,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
