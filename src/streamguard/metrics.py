"""Live metric names and sinks.

Names follow Prometheus conventions: `streamguard_` prefix, base units, `_total` for
counters; labels `run`, `track`, `trial`, `rank`. The loop reports plain dicts keyed by the
short names below; each sink maps them to its own backend. Final results (metrics.json) are
written by `train.evaluate`, not here.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

PREFIX = "streamguard_"
LABELS = ("run", "track", "trial", "rank")
# short name -> (kind, help). Gauges unless stated.
LIVE_METRICS = {
    "train_loss": ("gauge", "Mean training loss over the last reporting window."),
    "val_loss": ("gauge", "Validation loss at the last evaluation."),
    "val_f1": ("gauge", "Validation F1 of the vulnerable class at the best threshold."),
    "samples_per_second": ("gauge", "Training throughput of this worker."),
    "epoch": ("gauge", "Current epoch (0-based)."),
    "global_step": ("gauge", "Optimizer steps taken in this run, across restarts."),
    "learning_rate": ("gauge", "Current learning rate."),
    "checkpoint_age_seconds": ("gauge", "Seconds since the last committed checkpoint."),
    "checkpoint_duration_seconds": ("histogram", "Time to write and commit one checkpoint."),
    "restarts_total": ("counter", "Times this run resumed from a checkpoint."),
    "lost_steps_total": ("counter", "Optimizer steps redone after resuming (work lost to failures)."),
}


class MetricsSink(Protocol):
    def write(self, metrics: dict) -> None: ...
    def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per report; a durable local trace of the live metrics."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)

    def write(self, metrics: dict) -> None:
        self._file.write(json.dumps(metrics, default=float) + "\n")

    def close(self) -> None:
        self._file.close()


class PrometheusSink:
    """Serves the live metrics on an HTTP port for Prometheus to scrape (laptop/torchrun;
    on Ray the distributed package exports through ray.util.metrics instead)."""

    def __init__(self, port: int, labels: dict[str, str]):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.labels = {k: str(labels.get(k, "")) for k in LABELS}
        self._metrics = {}
        for short, (kind, help_text) in LIVE_METRICS.items():
            if short == "checkpoint_age_seconds":
                continue
            name = PREFIX + short
            if kind == "counter":
                metric = Counter(name.removesuffix("_total"), help_text, LABELS, registry=self.registry)
            elif kind == "histogram":
                metric = Histogram(name, help_text, LABELS, registry=self.registry,
                                   buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
            else:
                metric = Gauge(name, help_text, LABELS, registry=self.registry)
            self._metrics[short] = (kind, metric.labels(**self.labels))
        # Age is computed at scrape time, so it keeps growing while no checkpoint lands.
        self._last_checkpoint: float | None = None
        age = Gauge(PREFIX + "checkpoint_age_seconds", LIVE_METRICS["checkpoint_age_seconds"][1], LABELS,
                    registry=self.registry).labels(**self.labels)
        age.set_function(lambda: float("nan") if self._last_checkpoint is None else time.time() - self._last_checkpoint)
        self.server, self.thread = start_http_server(port, addr="0.0.0.0", registry=self.registry)
        self.port = self.server.server_port
        log.info("Prometheus metrics on http://0.0.0.0:%d/metrics", self.port)

    def write(self, metrics: dict) -> None:
        if "checkpoint_duration_seconds" in metrics:
            self._last_checkpoint = time.time()
        for short, value in metrics.items():
            if short not in self._metrics or value is None:
                continue
            kind, child = self._metrics[short]
            if kind == "counter":
                child.inc(float(value))
            elif kind == "histogram":
                child.observe(float(value))
            else:
                child.set(float(value))

    def close(self) -> None:
        self.server.shutdown()
