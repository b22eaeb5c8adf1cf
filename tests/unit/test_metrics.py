import json
import urllib.request

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
