"""`RayRuntime`: the `Runtime` protocol inside a Ray Train worker.

The loop does not change under Ray. This class maps its few touch points:

- rank, world size and device come from `ray.train.get_context()`; Ray's `TorchConfig`
  has already initialised the process group (gloo on CPU, NCCL on GPU), so the loop's
  own DDP wrapping and `ResumableSampler` apply unchanged.
- `commit()` hands rank 0's checkpoint directory to `ray.train.report(checkpoint=...)` under
  `checkpoints/step_<n>` of the run directory, uploaded by `CheckpointStore.commit` (data
  files first, manifest last, then retention): one on-storage format for laptop, torchrun
  and Ray runs. Uploads run in Ray's background thread (`CheckpointUploadMode.ASYNC`),
  except the preemption checkpoint, which is committed before the worker stops.
- `latest_checkpoint()` lists the run's storage itself and takes the newest checkpoint
  whose manifest verifies. It does not trust `ray.train.get_checkpoint()` alone: that is
  the last checkpoint the controller counted, which misses one reported just before a
  crash and cannot fall back past a corrupt one.
- `stop_requested()` is set by SIGTERM to the worker process (spot notice, eviction), by a
  Ray node drain (`ray drain-node`, preemption watcher) and by the driver's stop request.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train.torch import TorchConfig
from ray.train.torch.config import _TorchBackend

from streamguard.checkpoint import checkpoint_name, verify
from streamguard.config import Config
from streamguard.rundir import RunDir
from streamguard.runtime import ProgressMarker, pick_device

log = logging.getLogger(__name__)

STOP_NAMESPACE = "streamguard"
_SIGTERM = threading.Event()
_TRAINING = threading.Event()  # set while a RayRuntime is live in this worker process


# --------------------------------------------------------------------------- SIGTERM


def _install_sigterm_handler() -> int:
    """Runs on each worker actor's main thread (signal handlers can only be installed there;
    the training function runs in another thread). While training, SIGTERM only raises the
    flag and the loop checkpoints at the next step; a second SIGTERM, or one while no
    training runs (Ray shutting the worker group down), goes to Ray's handler (exit)."""
    import os

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        if _TRAINING.is_set() and not _SIGTERM.is_set():
            log.warning("worker %d received SIGTERM: checkpoint at the next step boundary, then stop", os.getpid())
            _SIGTERM.set()
        elif callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    _SIGTERM.clear()
    return os.getpid()


class _Backend(_TorchBackend):
    def on_start(self, worker_group, backend_config) -> None:
        super().on_start(worker_group, backend_config)
        worker_group.execute(_install_sigterm_handler)


class StreamGuardTorchConfig(TorchConfig):
    """Ray's TorchConfig (process group setup) plus our SIGTERM handler on every worker."""

    @property
    def backend_cls(self):
        return _Backend


# --------------------------------------------------------------------------- driver stop


@ray.remote(num_cpus=0)
class StopSignal:
    """The driver's stop request, polled by workers (SIGTERM to `streamguard train --ray`)."""

    def __init__(self):
        self._requested = False

    def request(self) -> None:
        self._requested = True

    def reset(self) -> None:
        self._requested = False

    def requested(self) -> bool:
        return self._requested


def stop_signal_name(run_name: str) -> str:
    return f"stop:{run_name}"


def _drain_notice_reader():
    """A cheap per-step check of Ray Train's preemption flag for this worker (node drain).
    It reads the worker's own train context: `ray.train.get_preemption_info()` is a
    collective, too costly per step, and our per-step all-reduce already spreads the flag.
    Resolved once; without the internal API, drains are seen as node loss."""
    try:
        from ray.train.v2._internal.execution.context import get_train_context
    except ImportError:  # internal API moved
        log.warning("this Ray exposes no preemption context: a node drain is handled as a node loss")
        return lambda: False

    def read() -> bool:
        try:
            return get_train_context().preemption_context.preemption_info is not None
        except (AttributeError, RuntimeError):
            return False

    return read


# --------------------------------------------------------------------------- runtime


class RayRuntime:
    def __init__(self, cfg: Config, *, trial: str = "", sinks=()):
        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        use_gpu = cfg.ray.gpus_per_worker > 0
        self.device = pick_device("cuda" if use_gpu else "cpu", 0 if use_gpu else ctx.get_local_rank())
        if use_gpu:
            import ray.train.torch as rtt

            self.device = rtt.get_device()
        self.cfg = cfg
        self.run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())
        self.store = self.run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best)
        self.progress = ProgressMarker(self.run.storage) if self.rank == 0 else None
        self.sinks = list(sinks)
        self._scratch = tempfile.mkdtemp(prefix="streamguard-resume-")
        self._driver_stop = threading.Event()
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll_driver, name="stop-poller", daemon=True)
        self._poller.start()
        self._drain_notice = _drain_notice_reader()
        _TRAINING.set()

    # ---------------------------------------------------------------- stop

    def _poll_driver(self) -> None:
        handle = None
        while not self._closed.wait(self.cfg.ray.stop_poll_interval_s):
            try:
                handle = handle or ray.get_actor(stop_signal_name(self.cfg.run.name), namespace=STOP_NAMESPACE)
                if ray.get(handle.requested.remote(), timeout=10):
                    log.warning("the driver asked to stop: checkpoint at the next step boundary")
                    self._driver_stop.set()
                    return
            except Exception:  # noqa: BLE001 - no driver actor (e.g. a Tune trial): nothing to poll
                handle = None

    def stop_requested(self) -> str | None:
        if self._driver_stop.is_set():
            return "shutdown"
        if _SIGTERM.is_set() or self._drain_notice():
            return "preemption"
        return None

    # ---------------------------------------------------------------- metrics and checkpoints

    def report(self, metrics: dict) -> None:
        for sink in self.sinks:
            sink.write(metrics)
        if self.progress is not None and "global_step" in metrics:
            self.progress.update(metrics["global_step"])

    def commit(self, metrics: dict, checkpoint_dir: str | Path | None, *, urgent: bool = False) -> None:
        kwargs = {}
        if checkpoint_dir is not None:
            name = checkpoint_name(verify(checkpoint_dir)["global_step"])
            kwargs = {"checkpoint": ray.train.Checkpoint.from_directory(str(checkpoint_dir)),
                          "checkpoint_dir_name": f"checkpoints/{name}", "delete_local_checkpoint_after_upload": True,
                          "checkpoint_upload_fn": partial(self._upload, name, metrics),
                          "checkpoint_upload_mode": ray.train.CheckpointUploadMode.SYNC
                          if urgent or not self.cfg.ray.async_checkpoint_upload else ray.train.CheckpointUploadMode.ASYNC}
        ray.train.report({k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}, **kwargs)
        if checkpoint_dir is None:
            self.report({k: v for k, v in metrics.items() if k != "checkpoint_duration_seconds"})

    def _upload(self, name: str, metrics: dict, checkpoint: ray.train.Checkpoint, dir_name: str) -> ray.train.Checkpoint:
        """Ray's checkpoint_upload_fn (rank 0, maybe in Ray's upload thread): our commit
        protocol into `<run>/<dir_name>`, where Ray expects it; Ray then deletes the local copy."""
        started = time.time()
        uri = self.store.commit(checkpoint.path, name)
        log.info("checkpoint saved: %s", uri)
        self.report({**metrics, "checkpoint_duration_seconds": metrics.get("checkpoint_duration_seconds", 0.0)
                     + time.time() - started})
        storage = ray.train.get_context().get_storage()
        return ray.train.Checkpoint(f"{storage.experiment_fs_path}/{dir_name}", filesystem=storage.storage_filesystem)

    def latest_checkpoint(self) -> Path | None:
        """Rank 0 picks the newest valid checkpoint; the others load that same one."""
        path = self.store.latest_valid(self._scratch) if self.rank == 0 else None
        step = torch.tensor([verify(path)["global_step"] if path is not None else -1], device=self.device)
        if dist.is_initialized():
            dist.broadcast(step, src=0)
        if self.rank != 0 and int(step.item()) >= 0:
            path = self.store.fetch(checkpoint_name(int(step.item())), self._scratch)
        return path

    def best_checkpoint(self) -> Path | None:
        return self.store.best_valid(self._scratch)

    def last_progress_step(self) -> int | None:
        return self.progress.read_step() if self.progress is not None else None

    def close(self) -> None:
        _TRAINING.clear()
        self._closed.set()
        for sink in self.sinks:
            sink.close()
        if self.progress is not None:
            self.progress.close()
        shutil.rmtree(self._scratch, ignore_errors=True)
