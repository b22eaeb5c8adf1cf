import json
import urllib.request
from typing import ClassVar

import pytest

from streamguard.metrics import LIVE_METRICS, PREFIX, JsonlSink, PrometheusSink


def test_jsonl_sink_appends(tmp_path):
    sink = JsonlSink(tmp_path / "m.jsonl")
    sink.write({"train_loss": 0.5})
    sink.write({"val_f1": 0.75})
    sink.close()
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert rows == [{"train_loss": 0.5}, {"val_f1": 0.75}]


def test_prometheus_sink_serves_named_series_over_http():
    pytest.importorskip("prometheus_client")
    sink = PrometheusSink(0, {"run": "r1", "track": "gnn", "trial": "", "rank": "0"})
    try:
        sink.write({"train_loss": 0.25, "global_step": 7, "restarts_total": 1, "checkpoint_duration_seconds": 0.3,
                    "not_a_metric": 5})
        body = urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read().decode()
    finally:
        sink.close()
    labels = 'rank="0",run="r1",track="gnn",trial=""'
    assert f"{PREFIX}train_loss{{{labels}}} 0.25" in body
    assert f"{PREFIX}global_step{{{labels}}} 7.0" in body
    assert f"{PREFIX}restarts_total{{{labels}}} 1.0" in body
    assert f"{PREFIX}checkpoint_duration_seconds_count{{{labels}}} 1.0" in body
    age = [line for line in body.splitlines() if line.startswith(f"{PREFIX}checkpoint_age_seconds{{")]
    assert age and 0 <= float(age[0].split()[-1]) < 60
    for short in LIVE_METRICS:
        assert f"# HELP {PREFIX}{short}" in body or f"# HELP {PREFIX}{short.removesuffix('_total')}" in body
    assert "not_a_metric" not in body


def _scrape(sink) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{sink.port}/metrics", timeout=5).read().decode()


def test_prometheus_sink_exports_no_made_up_gauge_values_and_counts_age_from_start():
    pytest.importorskip("prometheus_client")
    sink = PrometheusSink(0, {"run": "r1", "track": "gnn", "trial": "t3", "rank": "1"}, addr="127.0.0.1")
    try:
        body = _scrape(sink)
        labels = 'rank="1",run="r1",track="gnn",trial="t3"'
        assert f"{PREFIX}train_loss{{" not in body  # no 0 before the first report
        assert f"{PREFIX}restarts_total{{{labels}}} 0.0" in body  # counters start at 0: increase() sees the first
        assert f'{PREFIX}checkpoint_duration_seconds_bucket{{le="0.05",{labels}}} 0.0' in body
        age = [line for line in body.splitlines() if line.startswith(f"{PREFIX}checkpoint_age_seconds{{")]
        assert age and float(age[0].split()[-1]) >= 0  # before any checkpoint: since the process started
        sink.write({"lost_steps_total": 0, "val_f1": 0.5})  # a zero increment is not an error
        body = _scrape(sink)
        assert f"{PREFIX}lost_steps_total{{{labels}}} 0.0" in body
        assert f"{PREFIX}val_f1{{{labels}}} 0.5" in body
    finally:
        sink.close()


def test_checkpoint_clock_resets_on_a_committed_checkpoint(monkeypatch):
    from streamguard import metrics

    now = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    clock = metrics.CheckpointClock()
    now[0] = 130.0
    assert clock.age() == 30.0
    clock.observe({"train_loss": 1.0})
    assert clock.age() == 30.0
    clock.observe({"checkpoint_duration_seconds": 0.2})
    now[0] = 135.0
    assert clock.age() == 5.0


class _FakeRayMetric:
    """Stands in for ray.util.metrics.{Counter,Gauge,Histogram}: records calls."""

    registry: ClassVar[dict] = {}

    def __init__(self, name, description="", boundaries=None, tag_keys=None):
        self.name, self.boundaries, self.tag_keys, self.calls = name, boundaries, tag_keys, []
        _FakeRayMetric.registry[name] = self

    def set_default_tags(self, tags):
        self.tags = tags
        return self

    def set(self, value):
        self.calls.append(("set", value))

    def inc(self, value=1.0):
        if value <= 0:
            raise ValueError(f"value must be >0, got {value}")  # as Ray does
        self.calls.append(("inc", value))

    def observe(self, value):
        self.calls.append(("observe", value))


def test_ray_sink_maps_every_live_metric_and_refreshes_checkpoint_age(monkeypatch):
    import sys
    import time
    import types

    fake = types.ModuleType("ray.util.metrics")
    fake.Counter = fake.Gauge = fake.Histogram = _FakeRayMetric
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    monkeypatch.setitem(sys.modules, "ray.util", types.ModuleType("ray.util"))
    monkeypatch.setitem(sys.modules, "ray.util.metrics", fake)
    monkeypatch.delitem(sys.modules, "streamguard.distributed.metrics", raising=False)
    from streamguard.distributed.metrics import RayMetricsSink

    monkeypatch.delitem(sys.modules, "streamguard.distributed.metrics")
    _FakeRayMetric.registry = {}
    sink = RayMetricsSink({"run": "r", "track": "gnn", "trial": "", "rank": "1"}, refresh_seconds=0.05)
    try:
        reg = _FakeRayMetric.registry
        assert set(reg) == {PREFIX + short for short in LIVE_METRICS}  # Ray adds ray_ in front
        assert all(m.tags == {"run": "r", "track": "gnn", "trial": "", "rank": "1"} for m in reg.values())
        assert all(m.tag_keys == ("run", "track", "trial", "rank") for m in reg.values())
        assert reg[f"{PREFIX}checkpoint_duration_seconds"].boundaries == [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
        sink.write({"train_loss": 0.25, "restarts_total": 1, "lost_steps_total": 0, "checkpoint_duration_seconds": 0.3,
                    "global_step": 7, "not_a_metric": 1, "val_f1": None})
        assert set(reg[f"{PREFIX}train_loss"].calls) == {("set", 0.25)}  # (possibly re-set by the thread)
        assert set(reg[f"{PREFIX}global_step"].calls) == {("set", 7.0)}
        assert reg[f"{PREFIX}restarts_total"].calls == [("inc", 1.0)]
        assert reg[f"{PREFIX}lost_steps_total"].calls == []
        assert reg[f"{PREFIX}checkpoint_duration_seconds"].calls == [("observe", 0.3)]
        assert reg[f"{PREFIX}val_f1"].calls == []
        age, f1 = reg[f"{PREFIX}checkpoint_age_seconds"], reg[f"{PREFIX}train_loss"]
        n = len(age.calls)
        deadline = time.time() + 10
        while (len(age.calls) < n + 2 or len(f1.calls) < 3) and time.time() < deadline:
            time.sleep(0.02)  # the daemon thread keeps setting the gauges with no report
        assert len(age.calls) >= n + 2 and all(kind == "set" and value >= 0 for kind, value in age.calls)
        assert age.calls[-1][1] >= age.calls[n][1]  # it grows while no checkpoint lands
        assert len(f1.calls) >= 3 and set(f1.calls) == {("set", 0.25)}  # Ray drops a gauge not set lately
        assert reg[f"{PREFIX}restarts_total"].calls == [("inc", 1.0)]  # counters are never re-sent
    finally:
        sink.close()
    assert not sink._refresher.is_alive()
