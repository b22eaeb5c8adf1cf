"""Live metric names and sinks.

Names follow Prometheus conventions: `streamguard_` prefix, base units, `_total` for
counters; labels `run`, `track`, `trial`, `rank`. The loop reports plain dicts keyed by the
short names below; each sink maps them to its own backend (`distributed.metrics` holds the
Ray one). Final results (metrics.json) are written by `train.evaluate`, not here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Literal, Protocol

log = logging.getLogger(__name__)

PREFIX = "streamguard_"
RAY_PREFIX = "ray_"  # ray.util.metrics exports every name with this in front
LABELS = ("run", "track", "trial", "rank")
# short name -> (kind, help). Gauges unless stated. Counters are reported as increments.
LIVE_METRICS = {
    "train_loss": ("gauge", "Mean training loss over the last reporting window."),
    "val_loss": ("gauge", "Validation loss at the last evaluation."),
    "val_f1": ("gauge", "Validation F1 of the vulnerable class at the best threshold."),
    "samples_per_second": ("gauge", ("Training throughput of the run as seen by this worker "
                                     "(its samples x world size / time).")),
    "epoch": ("gauge", "Current epoch (0-based)."),
    "global_step": ("gauge", "Optimizer steps taken in this run, across restarts."),
    "learning_rate": ("gauge", "Current learning rate."),
    "checkpoint_age_seconds": ("gauge", ("Seconds since this process last committed a checkpoint "
                                         "(since it started, before its first).")),
    "checkpoint_duration_seconds": ("histogram", "Time to write and commit one checkpoint."),
    "restarts_total": ("counter", "Times this run resumed from a checkpoint."),
    "lost_steps_total": ("counter", "Optimizer steps redone after resuming (work lost to failures)."),
}
CHECKPOINT_DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# The loop adds this key to the report of every committed checkpoint.
CHECKPOINT_KEY = "checkpoint_duration_seconds"


def exported_names(backend: Literal["local", "ray"]) -> list[str]:
    """Series names as Prometheus stores them, in LIVE_METRICS order: the one list that
    dashboards, alert rules and tests check against.

    `local` is `PrometheusSink` (prometheus_client also adds `*_created` timestamps to
    counters and histograms; they are not part of this contract). `ray` is
    `distributed.metrics.RayMetricsSink` as Ray 2.60 exports it: the same names with `ray_`
    in front (a Counter registered as `streamguard_x_total` is exported as
    `ray_streamguard_x_total`, with no second `_total`).
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', not {backend!r}")
    prefix = PREFIX if backend == "local" else RAY_PREFIX + PREFIX
    names = []
    for short, (kind, _) in LIVE_METRICS.items():
        suffixes = ("_bucket", "_sum", "_count") if kind == "histogram" else ("",)
        names += [prefix + short + s for s in suffixes]
    return names


class MetricsSink(Protocol):
    def write(self, metrics: dict) -> None: ...
    def close(self) -> None: ...


class CheckpointClock:
    """Seconds since the last committed checkpoint: the last report carrying
    `checkpoint_duration_seconds`. Before the first one it counts from this clock's creation,
    so a process that never manages to checkpoint still shows its work at risk."""

    def __init__(self) -> None:
        self._since = time.monotonic()  # immune to wall-clock jumps

    def observe(self, metrics: dict) -> None:
        if CHECKPOINT_KEY in metrics:
            self._since = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._since


class JsonlSink:
    """Appends one JSON object per report; a durable local trace of the live metrics."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115 (open for the run)

    def write(self, metrics: dict) -> None:
        self._file.write(json.dumps(metrics, default=float) + "\n")

    def close(self) -> None:
        self._file.close()


class PrometheusSink:
    """Serves the live metrics on an HTTP port for Prometheus to scrape (laptop/torchrun;
    on Ray, `distributed.metrics.RayMetricsSink` exports through ray.util.metrics instead).

    Counters and the histogram are exported from the start (at 0, so `increase()` sees the
    first increment); a gauge appears at its first value, never as a made-up 0.
    `checkpoint_age_seconds` is computed at scrape time, so it keeps growing while no
    checkpoint lands."""

    def __init__(self, port: int, labels: dict[str, str], *, addr: str = "0.0.0.0"):
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            start_http_server,
        )

        self.registry = CollectorRegistry()
        self.labels = {k: str(labels.get(k, "")) for k in LABELS}
        self._metrics = {}  # short -> (kind, labelled child, or the parent for a gauge not yet set)
        for short, (kind, help_text) in LIVE_METRICS.items():
            name = PREFIX + short
            if kind == "counter":  # prometheus_client appends `_total` itself
                metric = Counter(name.removesuffix("_total"), help_text, LABELS, registry=self.registry)
                self._metrics[short] = (kind, metric.labels(**self.labels))
            elif kind == "histogram":
                metric = Histogram(name, help_text, LABELS, registry=self.registry, buckets=CHECKPOINT_DURATION_BUCKETS)
                self._metrics[short] = (kind, metric.labels(**self.labels))
            else:
                self._metrics[short] = (kind, Gauge(name, help_text, LABELS, registry=self.registry))
        self._clock = CheckpointClock()
        _, age = self._metrics.pop("checkpoint_age_seconds")
        age.labels(**self.labels).set_function(self._clock.age)
        self._set: set[str] = set()
        self.server, self.thread = start_http_server(port, addr=addr, registry=self.registry)
        self.port = self.server.server_port
        log.info("Prometheus metrics on http://%s:%d/metrics", addr, self.port)

    def write(self, metrics: dict) -> None:
        self._clock.observe(metrics)
        for short, value in metrics.items():
            if short not in self._metrics or value is None:
                continue
            kind, metric = self._metrics[short]
            if kind == "counter":
                if value > 0:
                    metric.inc(float(value))
            elif kind == "histogram":
                metric.observe(float(value))
            else:
                metric.labels(**self.labels).set(float(value))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
