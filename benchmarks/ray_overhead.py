"""Ray Train overhead on the same training work; prints one JSON object.

    python benchmarks/ray_overhead.py [--size 2400] [--epochs 4] [--repeats 2]

- plain: `train()` in this process with the LocalRuntime (one process, no Ray).
- ray: the same config through `train_on_ray` with 1 worker that owns every CPU, so torch
  uses the same number of threads; `ray_s` is the wall time of the same `train()` call
  inside the Ray worker (fit, checkpoints to storage, final scoring).
- ratio = ray_s / plain_s (min over repeats of each; the order alternates per repeat). Cluster start-up (`ray.init`) and
  the per-fit worker-group start are excluded from it and reported separately.
Goal: ratio <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import torch

from streamguard import config as cfgmod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2400, help="synthetic functions")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    cpus = os.cpu_count() or 1
    storage = tempfile.mkdtemp(prefix="sg-overhead-")
    overrides = [f"data.synthetic_size={args.size}", f"train.epochs={args.epochs}", "train.early_stopping_patience=0",
                 "metrics.plots=false", "ray.num_workers=1", f"ray.cpus_per_worker={cpus}",
                 f"run.storage_path={storage}", "train.device=cpu"]

    from streamguard.data.dataset import load_splits

    base = cfgmod.load("quickstart", overrides)
    load_splits(base.data, seed=base.run.seed)  # warm the prepared-data cache for both sides
    torch.set_num_threads(cpus)

    plain, ray_inner, ray_fit = [], [], []
    import ray

    from streamguard.distributed.train import connect, train_on_ray

    t0 = time.perf_counter()
    connect(base)
    cluster_start_s = time.perf_counter() - t0
    threads = None
    for i in range(args.repeats):
        # Alternate the order so drifting machine load does not favour one side.
        for side in ("plain", "ray") if i % 2 == 0 else ("ray", "plain"):
            cfg = cfgmod.load("quickstart", [*overrides, f"run.name={side}{i}"])
            if side == "plain":
                plain.append(_plain(cfg))
                continue
            t0 = time.perf_counter()
            outcome = train_on_ray(cfg)
            ray_fit.append(time.perf_counter() - t0)
            ray_inner.append(outcome.worker["train_s"])
            threads = outcome.worker["torch_threads"]
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)
    print(json.dumps({
        "plain_s": round(min(plain), 3), "ray_s": round(min(ray_inner), 3),
        "ratio": round(min(ray_inner) / min(plain), 4), "cluster_start_s": round(cluster_start_s, 3),
        "worker_group_start_s": round(min(f - r for f, r in zip(ray_fit, ray_inner)), 3),
        "ray_fit_wall_s": round(min(ray_fit), 3), "plain_runs_s": [round(x, 3) for x in plain],
        "ray_runs_s": [round(x, 3) for x in ray_inner], "torch_threads": {"plain": torch.get_num_threads(),
                                                                          "ray": threads},
        "size": args.size, "epochs": args.epochs, "goal_ratio_max": 1.03}))


def _plain(cfg) -> float:
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime, ProgressMarker
    from streamguard.train.loop import train

    run = RunDir(cfg.run.storage_path, cfg.run.name)
    rt = LocalRuntime(run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best),
                      device="cpu", progress=ProgressMarker(run.storage))
    t0 = time.perf_counter()
    train(cfg, rt, run)
    elapsed = time.perf_counter() - t0
    rt.close()
    return elapsed


if __name__ == "__main__":
    main()
