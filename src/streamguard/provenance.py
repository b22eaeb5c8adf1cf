"""What reproduces a run: git commit, library versions, seeds, dataset checksums."""

from __future__ import annotations

import platform
import socket
import subprocess
import time
from importlib import metadata
from pathlib import Path

_PACKAGES = ("streamguard", "torch", "torch-geometric", "tree-sitter", "tree-sitter-c", "numpy",
             "scikit-learn", "safetensors", "pydantic", "ray")


def git_commit(cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() + ("-dirty" if dirty else "")) if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def run_info(cfg, data_info, **extra) -> dict:
    return {
        "run": cfg.run.name, "config_hash": cfg.hash(), "seed": cfg.run.seed,
        "git_commit": git_commit(Path(__file__).parent), "versions": versions(),
        "data": data_info.to_dict(), "host": socket.gethostname(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra,
    }
