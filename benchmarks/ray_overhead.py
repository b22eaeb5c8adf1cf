"""Ray Train overhead on the same training work; prints one JSON object.

    python benchmarks/ray_overhead.py [--size 2400] [--epochs 4] [--repeats 2]

- plain: `train()` with the LocalRuntime in a fresh Python process (no Ray), while the
  Ray cluster started for the other side sits idle.
- ray: the same config through `train_on_ray` with 1 worker that owns every CPU, so torch
  uses the same number of threads; `ray_s` is the wall time of the same `train()` call
  inside the Ray worker (fit, checkpoints to storage, final scoring).
- Both `train()` calls start in a fresh process, so both pay the same first-use costs
  (lazy imports, torch's first kernels); a plain run repeated in an already warm process
  would flatter the plain side.
- ratio = ray_s / plain_s (min over repeats of each; the order alternates per repeat).
  Cluster start-up (`ray.init`) and the per-fit worker-group start are excluded from it
  and reported separately.
- epoch_throughput_ratio: plain / ray training samples/s, the median over the epochs of
  every repeat (the loop's own `samples_per_s` in history.json): the steady-state cost,
  without any start-up.
Goal: ratio <= 1.03.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import torch

from streamguard import config as cfgmod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2400, help="synthetic functions")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--plain-child", metavar="CONFIG_JSON", help=argparse.SUPPRESS)  # internal: one plain run
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_child:
        return _plain_child(args.plain_child, args.threads)
    cpus = os.cpu_count() or 1
    storage = tempfile.mkdtemp(prefix="sg-overhead-")
    overrides = [f"data.synthetic_size={args.size}", f"train.epochs={args.epochs}", "train.early_stopping_patience=0",
                 "metrics.plots=false", "ray.num_workers=1", f"ray.cpus_per_worker={cpus}",
                 f"run.storage_path={storage}", "train.device=cpu"]

    from streamguard.data.dataset import load_splits

    base = cfgmod.load("quickstart", overrides)
    load_splits(base.data, seed=base.run.seed)  # warm the prepared-data cache for both sides
    torch.set_num_threads(cpus)

    plain, ray_inner, ray_fit, plain_rates, ray_rates = [], [], [], [], []
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
                seconds, epochs = _plain(cfg)
                plain.append(seconds)
                plain_rates.extend(epochs)
                continue
            t0 = time.perf_counter()
            outcome = train_on_ray(cfg)
            ray_fit.append(time.perf_counter() - t0)
            ray_inner.append(outcome.worker["train_s"])
            ray_rates.extend(_epoch_rates(cfg))
            threads = outcome.worker["torch_threads"]
    ray.shutdown()
    shutil.rmtree(storage, ignore_errors=True)
    print(json.dumps({
        "plain_s": round(min(plain), 3), "ray_s": round(min(ray_inner), 3),
        "ratio": round(min(ray_inner) / min(plain), 4), "cluster_start_s": round(cluster_start_s, 3),
        "worker_group_start_s": round(min(f - r for f, r in zip(ray_fit, ray_inner)), 3),
        "ray_fit_wall_s": round(min(ray_fit), 3), "plain_runs_s": [round(x, 3) for x in plain],
        "ray_runs_s": [round(x, 3) for x in ray_inner],
        "epoch_throughput_ratio": round(statistics.median(plain_rates) / statistics.median(ray_rates), 4),
        "epoch_samples_per_s": {"plain": round(statistics.median(plain_rates), 1),
                                "ray": round(statistics.median(ray_rates), 1)},
        "torch_threads": {"plain": torch.get_num_threads(),
                                                                          "ray": threads},
        "size": args.size, "epochs": args.epochs, "goal_ratio_max": 1.03}))


def _plain(cfg) -> tuple[float, list[float]]:
    """train() in a fresh interpreter (this script in `--plain-child` mode; see the module
    docstring); (seconds, samples/s per epoch)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, __file__, "--plain-child", json.dumps(cfg.to_dict()),
                          "--threads", str(torch.get_num_threads())],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["train_s"], _epoch_rates(cfg)


def _plain_child(config_json: str, threads: int) -> None:
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime, ProgressMarker
    from streamguard.train.loop import train

    torch.set_num_threads(threads)
    cfg = cfgmod.Config.from_dict(json.loads(config_json))
    run = RunDir(cfg.run.storage_path, cfg.run.name)
    rt = LocalRuntime(run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best),
                      device="cpu", progress=ProgressMarker(run.storage))
    t0 = time.perf_counter()
    train(cfg, rt, run)
    print(json.dumps({"train_s": time.perf_counter() - t0}))
    rt.close()


def _epoch_rates(cfg) -> list[float]:
    history = os.path.join(cfg.run.storage_path, cfg.run.name, "history.json")
    with open(history) as fh:
        return [float(e["samples_per_s"]) for e in json.load(fh)]


if __name__ == "__main__":
    main()
