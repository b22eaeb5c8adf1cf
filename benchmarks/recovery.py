"""Recovery after losing a node, with and without notice; prints one JSON object.

    python benchmarks/recovery.py [--size 2400] [--epochs 6]

A local 4-node Ray cluster (head + 3 one-CPU worker nodes: 2 train, 1 spare, so a
replacement is ready as an autoscaled node would be) runs the quickstart GNN with 2
workers and a checkpoint every 10 steps. Two runs:

- hard kill: SIGKILL the raylet and workers of one training node (a lost spot VM);
- notice: SIGTERM to that node's workers (the spot notice), then kill the node once the
  workers have left it.

recovery_s = from the kill (or the notice) to the first optimizer step of the resumed run,
read from the run's progress marker (written every step here). lost_steps = steps the
resumed run had to redo (the run's own record in metrics.json `resumes`).
Goals: recovery_s <= 30, notice_lost_steps <= 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2400, help="synthetic functions")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--health-check-period-ms", type=int, default=1000)
    ap.add_argument("--health-check-failure-threshold", type=int, default=3)
    args = ap.parse_args()
    from streamguard.distributed.local_cluster import LocalCluster

    storage = Path(tempfile.mkdtemp(prefix="sg-recovery-"))
    cluster = LocalCluster(worker_nodes=3, health_check_period_ms=args.health_check_period_ms,
                           health_check_failure_threshold=args.health_check_failure_threshold)
    out = {"cluster_start_s": round(cluster.start_s, 2),
           "node_health_check": {"period_ms": args.health_check_period_ms,
                                 "failure_threshold": args.health_check_failure_threshold}}
    try:
        for kind in ("hard_kill", "notice"):
            recovery, lost = _scenario(cluster, storage, kind, args)
            out[f"{kind}_recovery_s"], out[f"{kind}_lost_steps"] = recovery, lost
            if len(cluster.workers) < 3:
                cluster.add_spare_node()
    finally:
        cluster.shutdown()
    out["goals"] = {"recovery_s_max": 30, "notice_lost_steps_max": 1}
    print(json.dumps(out))


def _scenario(cluster, storage: Path, kind: str, args) -> tuple[float, int]:
    name = f"recovery-{kind}"
    cmd = [sys.executable, "-m", "streamguard", "train", "--ray", "--address", cluster.address,
           f"data.synthetic_size={args.size}", f"train.epochs={args.epochs}", "train.early_stopping_patience=0",
           "metrics.plots=false", "checkpoint.every_n_steps=10", "metrics.report_interval_s=0.001",
           f"run.storage_path={storage}", f"run.name={name}", "ray.num_workers=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = storage / name / "progress.json"
    _wait(lambda: _read(marker)[0] >= 15, proc, "training past its first checkpoint")
    victim = next(iter(cluster.train_workers().values()))
    t0 = time.time()
    if kind == "hard_kill":
        cluster.retire_node(victim)
    else:
        for pid, node in cluster.train_workers().items():
            if node is victim:
                os.kill(pid, signal.SIGTERM)
    writes = []  # (time, step) of every progress write after the failure
    while proc.poll() is None:
        step, when = _read(marker)
        if when > t0 and (not writes or writes[-1] != (when, step)):
            writes.append((when, step))
        if kind == "notice" and victim in cluster.workers and all(n is not victim for n in cluster.train_workers().values()) \
                and len(writes) > 2:
            cluster.retire_node(victim)  # the VM goes away after the notice
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} run failed with exit {proc.returncode}")
    resume = json.loads((storage / name / "metrics.json").read_text())["resumes"][0]
    first_step = next(t for t, s in writes if s > resume["from_step"])
    return round(first_step - t0, 2), resume["lost_steps"]


def _read(marker: Path) -> tuple[int, float]:
    try:
        data = json.loads(marker.read_text())
        return data["global_step"], data["time"]
    except (OSError, ValueError, KeyError):
        return 0, 0.0


def _wait(predicate, proc, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise SystemExit(f"training exited ({proc.returncode}) before {what}")
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    main()
