"""Where the one training loop runs: rank, world size, device, how checkpoints and metrics
leave the process, and whether someone asked us to stop.

`LocalRuntime` covers a laptop (one process) and `torchrun` (it initialises the process
group from torchrun's environment). `distributed.RayRuntime` implements the same protocol
on Ray Train. The loop only sees this protocol.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from streamguard.checkpoint import CheckpointStore
from streamguard.metrics import MetricsSink

log = logging.getLogger(__name__)


class Runtime(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def report(self, metrics: dict, checkpoint_dir: str | Path | None = None) -> None:
        """Hand live metrics, and optionally a saved checkpoint directory, to the runtime.
        Called by every rank; only rank 0 passes a checkpoint_dir."""

    def latest_checkpoint(self) -> Path | None:
        """Local directory of the newest checkpoint whose manifest verifies, or None."""

    def best_checkpoint(self) -> Path | None:
        """Local directory of the best-scoring valid checkpoint, or None."""

    def stop_requested(self) -> bool:
        """True once a preemption notice (SIGTERM, node drain) arrived."""


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from streamguard.errors import ConfigError

            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=auto or cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class LocalRuntime:
    def __init__(self, store: CheckpointStore, *, sinks: list[MetricsSink] = (), device: str = "auto"):
        self._init_process_group_from_env(device)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.device = pick_device(device, int(os.environ.get("LOCAL_RANK", 0)))
        self.store, self.sinks = store, list(sinks)
        self._scratch = tempfile.mkdtemp(prefix="streamguard-resume-")
        self._stop = False
        # The preemption notice: SIGTERM from a spot reclaim, pod eviction or torchrun.
        # We only set a flag; the loop checkpoints at the next step boundary and exits.
        try:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            pass

    @staticmethod
    def _init_process_group_from_env(device: str) -> None:
        if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return
        use_nccl = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")

    def _on_sigterm(self, signum, frame) -> None:
        log.warning("received SIGTERM: will checkpoint at the next step boundary and exit")
        self._stop = True

    def stop_requested(self) -> bool:
        return self._stop

    def report(self, metrics: dict, checkpoint_dir: str | Path | None = None) -> None:
        if checkpoint_dir is not None and self.rank == 0:
            from streamguard.checkpoint import checkpoint_name, verify

            manifest = verify(checkpoint_dir)
            uri = self.store.commit(checkpoint_dir, checkpoint_name(manifest["global_step"]))
            log.info("checkpoint saved: %s", uri)
        if self.rank == 0:
            for sink in self.sinks:
                sink.write(metrics)

    def latest_checkpoint(self) -> Path | None:
        return self.store.latest_valid(self._scratch)

    def best_checkpoint(self) -> Path | None:
        return self.store.best_valid(self._scratch)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if dist.is_initialized():
            dist.destroy_process_group()
