"""Run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, cli_env

# Small and fast, but the same code path as the quickstart.
TINY = ["data.synthetic_size=480", "model.gnn.hidden=32", "model.gnn.layers=2", "train.epochs=3",
        "train.batch_size=32", "train.early_stopping_patience=0", "metrics.plots=false"]


def sg(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamguard", *args]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(sg(*args), capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env or cli_env())
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-3000:]}\nSTDERR:\n{proc.stderr[-5000:]}")
    return proc


def committed(ckpt_dir: Path) -> list[str]:
    if not ckpt_dir.is_dir():
        return []
    return sorted(p.name for p in ckpt_dir.iterdir() if (p / "MANIFEST.json").exists())


def wait_for(predicate, timeout: float = 120, what: str = "condition", proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}: "
                                     f"{(proc.stderr or proc.stdout).read()[-5000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
