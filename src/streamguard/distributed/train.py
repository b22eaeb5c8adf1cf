"""Ray Train wiring: the driver side of `streamguard train --ray` and `ray_jobs/train.py`.

One `TorchTrainer` runs the one loop (`train.loop.train`) in N workers. The touch points:

- `RunConfig(name=run.name, storage_path=...)`: the stable run name from the config, never a
  timestamp. Starting the same command again (a new driver, a RayJob retry, a new cluster)
  finds the run's checkpoints and resumes from the newest one that verifies.
- S3: Ray gets a `pyarrow.fs.S3FileSystem` as `storage_filesystem` (endpoint, scheme and
  region from `storage.*` or `AWS_ENDPOINT_URL` / `AWS_REGION`; credentials from the default
  AWS chain: env vars, IRSA web identity, instance profile). The storage path is then
  `bucket/prefix` without `s3://`. That is the one way we pass custom endpoints.
- `FailureConfig(max_failures, max_preemption_failures)` covers worker and node loss.
- The Ray Train health-check knobs in `ray.*` are exported as the `RAY_TRAIN_*` variables
  Ray propagates from the driver to its controller and workers.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import ray
import ray.train
from ray.train.torch import TorchTrainer

from streamguard.config import Config
from streamguard.errors import ConfigError, StreamGuardError
from streamguard.rundir import RunDir
from streamguard.storage import is_s3

log = logging.getLogger(__name__)


class RayTrainingError(StreamGuardError):
    """The Ray run failed for good (out of retries, or a bug in the training function)."""


@dataclass
class Outcome:
    status: str          # "completed" or "stopped" (driver SIGTERM; the same command resumes)
    metrics: dict | None  # rank 0's metrics.json content when completed
    run: RunDir
    worker: dict | None = None  # rank 0's return value: train_s (the loop's wall time), torch_threads


# --------------------------------------------------------------------------- settings


def train_env(r) -> dict[str, str]:
    """Ray Train's controller/worker settings (propagated from the driver's environment)."""
    return {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": str(r.report_poll_interval_s),
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": str(r.worker_group_start_timeout_s),
        "RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S": str(r.worker_health_check_timeout_s),
        "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": str(r.preemption_poll_interval_s),
    }


def system_config(r) -> dict:
    """GCS settings for node-death detection; only applied to a Ray head we start ourselves."""
    return {"health_check_period_ms": r.node_health_check_period_ms,
            "health_check_failure_threshold": r.node_health_check_failure_threshold}


def storage_for_ray(cfg: Config):
    """(storage_path, storage_filesystem) for RunConfig; local paths are made absolute."""
    path = cfg.run.storage_path
    if not is_s3(path):
        return str(Path(path).expanduser().resolve()), None
    import pyarrow.fs as pafs

    endpoint = cfg.storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {"region": cfg.storage.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
              or "us-east-1", "connect_timeout": cfg.storage.connect_timeout_s,
              "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=cfg.storage.max_attempts)}
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
    return path[len("s3://"):].rstrip("/"), pafs.S3FileSystem(**kwargs)


def resolved(cfg: Config) -> Config:
    """The config the workers get: local storage made absolute (workers have another cwd)."""
    storage_path, _ = storage_for_ray(cfg)
    if is_s3(cfg.run.storage_path) or storage_path == cfg.run.storage_path:
        return cfg
    data = cfg.to_dict()
    data["run"]["storage_path"] = storage_path
    return Config.from_dict(data)


def check(cfg: Config) -> None:
    if cfg.train.device == "cuda" and cfg.ray.gpus_per_worker == 0:
        raise ConfigError("train.device=cuda under --ray needs GPUs: pass --gpus-per-worker 1 (ray.gpus_per_worker)")


# --------------------------------------------------------------------------- Ray's run snapshot

RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


def reconcile_ray_snapshot(run: RunDir) -> list[str]:
    """Drop checkpoints our retention pruned from Ray's run snapshot, before a new driver
    loads it (Ray refuses a snapshot that names a missing directory).

    `CheckpointStore` owns retention for every runtime (newest N plus the best, and
    half-uploaded leftovers), so Ray runs with `num_to_keep=None`. Ray's snapshot only feeds
    `ray.train.get_checkpoint()`; resume reads the store. If the snapshot's layout is not
    the one we know, it is removed (Ray then starts an empty checkpoint list) rather than
    guessed at. Returns the names that were dropped."""
    import json

    from streamguard.errors import StorageError

    try:
        snap = json.loads(run.storage.read_bytes(RAY_SNAPSHOT))
    except StorageError:
        return []  # first driver of this run
    except ValueError:
        snap = None
    present = set(run.storage.child("checkpoints").list())
    try:
        results, indices = snap["checkpoint_results"], snap["checkpoint_report_indices"]
        names = [r["checkpoint_dir_name"] for r in results]
        keep = [i for i, n in enumerate(names) if n.split("/")[-1] in present]
        dropped = [names[i] for i in range(len(names)) if i not in set(keep)]
        if not dropped:
            return []
        snap["checkpoint_results"] = [results[i] for i in keep]
        snap["checkpoint_report_indices"] = [indices[i] for i in keep]
        latest = snap.get("latest_checkpoint_result")
        if latest is not None and latest["checkpoint_dir_name"] in dropped:
            snap["latest_checkpoint_result"] = snap["checkpoint_results"][-1] if keep else None
        for key in ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
                    "failed_validation_checkpoint_dir_names"):
            snap[key] = [n for n in snap.get(key, []) if n not in dropped]
        run.storage.write_bytes(RAY_SNAPSHOT, json.dumps(snap).encode())
        log.info("Ray run snapshot: dropped %d pruned checkpoint(s)", len(dropped))
        return dropped
    except (KeyError, TypeError, IndexError):
        log.warning("Ray's run snapshot %s has an unknown layout; removing it (resume reads the checkpoint "
                    "store, not the snapshot)", RAY_SNAPSHOT)
        run.storage.delete(RAY_SNAPSHOT)
        return []


# --------------------------------------------------------------------------- Ray connection


def connect(cfg: Config) -> bool:
    """Join `ray.address` / RAY_ADDRESS, or start a local Ray. Returns True if we started it."""
    if ray.is_initialized():
        return False
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining the Ray cluster at %s", address)
        _check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=True)
        except ConnectionError as exc:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {exc}. Is `ray start --head` running "
                              "there? Use --address auto inside a cluster, or drop --address to start a local Ray")
        return False
    log.info("no Ray address given (ray.address / RAY_ADDRESS): starting a local Ray")
    # The dashboard is not optional: Ray Train's PlacementGroupCleaner asks its State API
    # whether a run is over, and without it every finished run (e.g. each Tune trial) keeps
    # its placement group, so the next run waits for CPUs forever.
    ray.init(address="local", _temp_dir=tempfile.mkdtemp(prefix="sgray", dir="/tmp"),
             _system_config=system_config(cfg.ray), include_dashboard=True, dashboard_host="127.0.0.1")
    return True


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a wrong HOST:PORT; `ray.init` itself retries for minutes."""
    import socket

    if address == "auto" or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({exc}). Check the head's GCS address "
                          "(`ray status` on the head; port 6379 by default), use --address auto inside a cluster, "
                          "or drop --address to start a local Ray") from None


# --------------------------------------------------------------------------- the worker


def worker_main(payload: dict) -> dict:
    """The training function each Ray Train worker runs: the one loop with a RayRuntime."""
    from streamguard.cli import _setup_logging
    from streamguard.distributed.runtime import RayRuntime
    from streamguard.train.loop import Preempted, train

    ctx = ray.train.get_context()
    os.environ["RANK"] = str(ctx.get_world_rank())  # log format and rank-aware helpers
    _setup_logging()
    cfg = Config.from_dict(payload["config"])
    labels = {"run": payload.get("run_label") or cfg.run.name, "track": cfg.model.track, "trial": payload.get("trial", ""),
              "rank": str(ctx.get_world_rank())}
    rt = RayRuntime(cfg, trial=labels["trial"], sinks=_sinks(labels))
    started = time.perf_counter()
    try:
        metrics = train(cfg, rt, rt.run)
    except Preempted as exc:
        if exc.reason == "shutdown":
            return {"status": "stopped", "message": str(exc)}
        # A notice for this worker or its node: the checkpoint is committed; failing lets Ray
        # Train restart the group elsewhere (FailureConfig), and the restart loses no steps.
        raise
    finally:
        rt.close()
    return {"status": "completed", "metrics": _jsonable(metrics) if metrics is not None else None,
            "train_s": time.perf_counter() - started, "torch_threads": __import__("torch").get_num_threads()}


def _sinks(labels: dict) -> list:
    from streamguard.distributed.metrics import RayMetricsSink

    return [RayMetricsSink(labels)]


def _jsonable(metrics: dict) -> dict:
    import json

    from streamguard.train.evaluate import to_json

    return json.loads(to_json(metrics))


# --------------------------------------------------------------------------- the driver


def train_on_ray(cfg: Config, *, trial: str = "", run_label: str | None = None, callbacks=()) -> Outcome:
    """Run (or resume) `cfg.run.name` on Ray Train and wait for it. In a Tune sweep, `trial`
    and `run_label` (the sweep name) label the live metrics, and `callbacks` forward the
    Train reports to the trial."""
    from streamguard.distributed.runtime import (
        STOP_NAMESPACE,
        StopSignal,
        StreamGuardTorchConfig,
        stop_signal_name,
    )

    check(cfg)
    os.environ.update(train_env(cfg.ray))  # read by the controller; Ray propagates RAY_TRAIN_* to workers
    cfg = resolved(cfg)
    run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())  # fails early on bad storage
    reconcile_ray_snapshot(run)
    started = connect(cfg)
    storage_path, fs = storage_for_ray(cfg)
    stop = StopSignal.options(name=stop_signal_name(cfg.run.name), namespace=STOP_NAMESPACE,
                              get_if_exists=True).remote()
    ray.get(stop.reset.remote())
    previous = _forward_sigterm(stop)
    r = cfg.ray
    use_gpu = r.gpus_per_worker > 0
    trainer = TorchTrainer(
        worker_main,
        train_loop_config={"config": cfg.to_dict(), "trial": trial, "run_label": run_label or cfg.run.name},
        torch_config=StreamGuardTorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=r.num_workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": r.cpus_per_worker, **({"GPU": r.gpus_per_worker} if use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=cfg.run.name, storage_path=storage_path, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=r.max_failures,
                                                   max_preemption_failures=r.max_preemption_failures),
            # Retention is ours (CheckpointStore.prune: newest N plus the best), run at each commit.
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=None), callbacks=list(callbacks)),
    )
    log.info("Ray Train: run %s, %d worker(s) (%s), storage %s", cfg.run.name, r.num_workers,
             "GPU/NCCL" if use_gpu else "CPU/gloo", run.uri)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as exc:
        raise RayTrainingError(f"run {cfg.run.name!r} failed after {r.max_failures} allowed failure(s): "
                               f"{_first_line(exc)}. Fix the cause and run the same command again to resume "
                               "from the newest checkpoint") from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()
    if result.error is not None:
        raise RayTrainingError(f"run {cfg.run.name!r} failed: {_first_line(result.error)}")
    value = result.return_value or {}
    if value.get("status") == "stopped":
        log.warning("%s; run the same command again to resume", value.get("message", "stopped"))
        return Outcome("stopped", None, run)
    return Outcome("completed", value.get("metrics"), run, value)


def _forward_sigterm(stop):
    """SIGTERM to the driver asks every worker to checkpoint at its next step and return."""
    try:
        def on_sigterm(signum, frame):
            log.warning("received SIGTERM: asking workers to checkpoint at the next step and stop")
            stop.request.remote()

        return signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1] if text else type(exc).__name__
