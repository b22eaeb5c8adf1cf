"""Where the one training loop runs: rank, world size, device, how checkpoints and metrics
leave the process, and whether someone asked us to stop.

`LocalRuntime` covers a laptop (one process) and `torchrun` (it initialises the process
group from torchrun's environment). `distributed.RayRuntime` implements the same protocol
on Ray Train. The loop only sees this protocol.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from streamguard.checkpoint import CheckpointStore, checkpoint_name, verify
from streamguard.errors import StorageError
from streamguard.metrics import MetricsSink
from streamguard.storage import Storage

log = logging.getLogger(__name__)


STOP_REASONS = (None, "preemption", "shutdown")
"""Why a run stops early, in precedence order. `preemption`: a notice for this process or
its node (SIGTERM, Ray node drain) -- checkpoint, then let the orchestrator restart us.
`shutdown`: the driver was asked to stop (SIGTERM to `streamguard train`) -- checkpoint and
return cleanly; the same command resumes."""


class Runtime(Protocol):
    rank: int
    world_size: int
    device: torch.device

    def report(self, metrics: dict) -> None:
        """Live metrics of this rank (loss, throughput, step...) to the metrics sinks. Local,
        never a collective: ranks may call it different numbers of times."""

    def commit(self, metrics: dict, checkpoint_dir: str | Path | None, *, urgent: bool = False) -> None:
        """A collective: every rank calls it; rank 0 passes a saved checkpoint directory and
        the runtime takes ownership of it (it is deleted once committed). `urgent` is the
        preemption checkpoint: committed before returning, never in the background."""

    def latest_checkpoint(self) -> Path | None:
        """Local directory of the newest checkpoint whose manifest verifies, or None."""

    def best_checkpoint(self) -> Path | None:
        """Local directory of the best-scoring valid checkpoint, or None."""

    def stop_requested(self) -> str | None:
        """None, or a reason from STOP_REASONS once a notice arrived (SIGTERM, node drain, driver stop)."""

    def last_progress_step(self) -> int | None:
        """The highest global step this run is known to have reached before now (the progress
        marker), so a resume can count the steps it has to redo."""


class ProgressMarker:
    """`<run>/progress.json`: the last global step a run reported, written by rank 0 at each
    live report in a background thread (one small PUT per report interval, never blocking a
    step). A resume compares it with its checkpoint to count lost steps."""

    NAME = "progress.json"

    def __init__(self, storage: Storage):
        self.storage = storage
        self._pending: dict | None = None
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="progress-marker", daemon=True)
        self._thread.start()

    def read_step(self) -> int | None:
        try:
            return int(json.loads(self.storage.read_bytes(self.NAME))["global_step"])
        except (StorageError, ValueError, KeyError, TypeError):
            return None

    def update(self, global_step: int) -> None:
        with self._cv:
            self._pending = {"global_step": int(global_step), "time": time.time()}
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                item, self._pending = self._pending, None
                if item is None:
                    return
            try:
                self.storage.write_bytes(self.NAME, json.dumps(item).encode())
            except StorageError as exc:  # metrics are best effort; training goes on
                log.warning("could not write the progress marker: %s", exc)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=10)


def pick_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from streamguard.errors import ConfigError

            raise ConfigError("train.device=cuda but no CUDA device is visible; use train.device=auto or cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


class LocalRuntime:
    """A single process, or one torchrun rank (the process group comes from torchrun's env)."""

    def __init__(self, store: CheckpointStore, *, sinks: list[MetricsSink] = (), device: str = "auto",
                 progress: ProgressMarker | None = None):
        self._init_process_group_from_env(device)
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        self.device = pick_device(device, int(os.environ.get("LOCAL_RANK", 0)))
        self.store, self.sinks = store, list(sinks)
        self.progress = progress if self.rank == 0 else None
        self._scratch = tempfile.mkdtemp(prefix="streamguard-resume-")
        self._stop: str | None = None
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
        self._stop = "preemption"

    def stop_requested(self) -> str | None:
        return self._stop

    def report(self, metrics: dict) -> None:
        if self.rank != 0:
            return
        for sink in self.sinks:
            sink.write(metrics)
        if self.progress is not None and "global_step" in metrics:
            self.progress.update(metrics["global_step"])

    def commit(self, metrics: dict, checkpoint_dir: str | Path | None, *, urgent: bool = False) -> None:
        if checkpoint_dir is not None and self.rank == 0:
            started = time.time()
            try:
                uri = self.store.commit(checkpoint_dir, checkpoint_name(verify(checkpoint_dir)["global_step"]))
            finally:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            log.info("checkpoint saved: %s", uri)
            metrics = {**metrics, "checkpoint_duration_seconds": metrics.get("checkpoint_duration_seconds", 0.0)
                       + time.time() - started}
        self.report(metrics)

    def latest_checkpoint(self) -> Path | None:
        return self.store.latest_valid(self._scratch)

    def best_checkpoint(self) -> Path | None:
        return self.store.best_valid(self._scratch)

    def last_progress_step(self) -> int | None:
        return self.progress.read_step() if self.progress is not None else None

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        if self.progress is not None:
            self.progress.close()
        if dist.is_initialized():
            dist.destroy_process_group()
