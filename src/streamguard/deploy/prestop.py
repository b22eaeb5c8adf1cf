"""A Ray worker pod's preStop hook: turn a spot notice into a checkpoint.

Kubernetes runs this when the pod is deleted (spot reclaim handled by the node termination
handler or Karpenter, node drain, eviction), before it sends SIGTERM to the container's
`ray start`. Stopping Ray first would kill the training processes without a checkpoint, so:

1. `ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION` tells the GCS this node goes away at
   the deadline; Ray Train's preemption watcher sees the drain (best effort: a failure is logged).
2. SIGTERM goes to every Ray Train worker process on this pod (process title `ray::RayTrainWorker`),
   whose handler makes the loop checkpoint at the next step boundary and stop.
3. Wait until they have exited, at most `--wait-seconds` (keep it below the pod's
   terminationGracePeriodSeconds), then return so the kubelet stops Ray.

Reads /proc only; never imports ray.

    python -m streamguard.deploy.prestop --wait-seconds 90
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TRAIN_WORKER_TITLE = "ray::RayTrainWorker"


def find_processes(title_prefix: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs whose command line (Ray rewrites it to the process title) starts with the prefix."""
    pids = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if cmdline.replace(b"\0", b" ").lstrip().startswith(title_prefix.encode()):
            pids.append(int(entry.name))
    return sorted(pids)


def drain_node(deadline_s: int, timeout_s: float = 15.0) -> bool:
    cmd = ["ray", "drain-node", "--reason", "DRAIN_NODE_REASON_PREEMPTION",
           "--reason-message", "pod preStop: spot notice, drain or eviction",
           "--deadline-remaining-seconds", str(deadline_s)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"ray drain-node did not run: {exc}")
        return False
    if done.returncode != 0:
        log(f"ray drain-node failed ({done.returncode}): {done.stderr.strip()[-300:]}")
    return done.returncode == 0


def _alive(pid: int) -> bool:
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_and_wait(title_prefix: str, wait_s: float, poll_s: float = 0.5) -> list[int]:
    """SIGTERM every matching process, wait for all to exit; returns those still alive."""
    pids = find_processes(title_prefix)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    log(f"sent SIGTERM to {len(pids)} training worker(s) {pids}; waiting up to {wait_s:.0f} s for their checkpoint")
    deadline = time.monotonic() + wait_s
    alive = [p for p in pids if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(poll_s)
        alive = [p for p in alive if _alive(p)]
    return alive


def log(message: str) -> None:
    # preStop output only shows up in `kubectl describe pod` events on failure; the container's
    # stderr is the next best place.
    print(f"streamguard preStop: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamguard.deploy.prestop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait-seconds", type=float, default=90.0,
                        help="how long to wait for training workers to checkpoint and exit (default 90)")
    parser.add_argument("--title", default=TRAIN_WORKER_TITLE,
                        help=f"process-title prefix of the processes to stop (default {TRAIN_WORKER_TITLE!r})")
    parser.add_argument("--no-drain", action="store_true", help="skip `ray drain-node`")
    args = parser.parse_args(argv)
    if not args.no_drain:
        drain_node(int(args.wait_seconds) + 5)
    left = stop_and_wait(args.title, args.wait_seconds)
    if left:
        log(f"{len(left)} worker(s) still running after {args.wait_seconds:.0f} s: {left}; the kubelet stops them")
    else:
        log("training workers stopped")
    return 0  # never fail the hook: a failed preStop only delays the pod's deletion


if __name__ == "__main__":
    sys.exit(main())
