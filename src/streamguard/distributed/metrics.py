"""Live metrics on Ray: the `metrics.MetricsSink` protocol over `ray.util.metrics`.

Every worker rank builds its own sink, so every rank exports its own series (the `rank`
label). Ray's metrics agent on each node serves them on the metrics export port, which
KubeRay's PodMonitor (or Ray's `prom_metrics_service_discovery.json`) points Prometheus at.
Ray puts `ray_` in front of every name: `metrics.exported_names("ray")` lists the series.
"""

from __future__ import annotations

import threading

import ray
from ray.util.metrics import Counter, Gauge, Histogram

from streamguard.metrics import (
    CHECKPOINT_DURATION_BUCKETS,
    LABELS,
    LIVE_METRICS,
    PREFIX,
    CheckpointClock,
)


def _export_interval_s() -> float:
    """How often a worker exports to its node's metrics agent (`RAY_metrics_report_interval_ms`,
    10 s by default, never under 1 s)."""
    try:
        return max(ray._config.metrics_report_interval_ms(), 1000) / 1000
    except AttributeError:  # a private accessor that may move: fall back to Ray's default
        return 10.0


class RayMetricsSink:
    """Gauges, counters and the checkpoint-duration histogram of LIVE_METRICS, tagged with
    `run`, `track`, `trial`, `rank`.

    A daemon thread re-sets every gauge every `refresh_seconds` (by default the export
    interval, at most 5 s), for two reasons measured on Ray 2.60:
    - the metrics agent drops a gauge that was not set within two export intervals (20 s by
      default), so an epoch-level value such as `val_f1` would vanish between epochs;
    - Ray cannot compute a value at scrape time, so `checkpoint_age_seconds` must be set
      again and again to keep growing while training stalls.
    When the process dies its gauges stop being refreshed and disappear from the agent, so
    a present gauge means a live worker. Counters and the histogram are cumulative and stay.
    """

    def __init__(self, labels: dict[str, str], *, refresh_seconds: float | None = None):
        tags = {k: str(labels.get(k, "")) for k in LABELS}
        self._metrics = {}
        for short, (kind, help_text) in LIVE_METRICS.items():
            # Registered under the full name, `_total` included: Ray 2.60 exports a Counter
            # named `streamguard_restarts_total` as `ray_streamguard_restarts_total`, with no
            # second `_total`, from both its OpenTelemetry and its OpenCensus exporter (a name
            # without `_total` would also get a gauge twin under OpenCensus).
            name = PREFIX + short
            if kind == "counter":
                metric = Counter(name, description=help_text, tag_keys=LABELS)
            elif kind == "histogram":
                metric = Histogram(name, description=help_text, boundaries=list(CHECKPOINT_DURATION_BUCKETS),
                                   tag_keys=LABELS)
            else:
                metric = Gauge(name, description=help_text, tag_keys=LABELS)
            self._metrics[short] = (kind, metric.set_default_tags(tags))
        self._gauges: dict[str, float] = {}  # last value of every gauge set so far
        self._clock = CheckpointClock()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._set_gauges()
        every = refresh_seconds if refresh_seconds is not None else min(5.0, _export_interval_s())
        self._refresher = threading.Thread(target=self._refresh, args=(every,), daemon=True,
                                           name="streamguard-metrics-refresh")
        self._refresher.start()

    def write(self, metrics: dict) -> None:
        with self._lock:
            self._clock.observe(metrics)
            for short, value in metrics.items():
                if short not in self._metrics or short == "checkpoint_age_seconds" or value is None:
                    continue
                kind, metric = self._metrics[short]
                if kind == "counter":
                    if value > 0:  # Ray rejects an increment of 0; the loop reports `lost_steps_total: 0`
                        metric.inc(float(value))
                elif kind == "histogram":
                    metric.observe(float(value))
                else:
                    self._gauges[short] = float(value)
                    metric.set(float(value))
            self._metrics["checkpoint_age_seconds"][1].set(self._clock.age())

    def close(self) -> None:
        self._closed.set()
        self._refresher.join(timeout=5)

    def _refresh(self, every: float) -> None:
        while not self._closed.wait(every):
            self._set_gauges()

    def _set_gauges(self) -> None:
        with self._lock:
            for short, value in self._gauges.items():
                self._metrics[short][1].set(value)
            self._metrics["checkpoint_age_seconds"][1].set(self._clock.age())
