"""The shipped Grafana dashboard and Prometheus alert rules: they parse, pass promtool, and
only use metric names the exporters really export, in both name families."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess

import pytest
import yaml

from streamguard.metrics import LIVE_METRICS, exported_names
from tests.conftest import REPO

MONITORING = REPO / "monitoring"
DASHBOARD = MONITORING / "grafana" / "streamguard-dashboard.json"
ALERTS = MONITORING / "prometheus" / "alerts.yaml"
ALERTS_TEST = MONITORING / "prometheus" / "alerts_test.yaml"
DOC = REPO / "docs" / "monitoring.md"
NAME = re.compile(r"(\(ray_\)\?)?(streamguard_[a-z0-9_]+)")
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARS = {"$run": ".*", "$track": ".*", "$trial": ".*", "$__rate_interval": "1m", "$__range": "1h"}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not found: install the Debian `prometheus` package (scripts/test.sh does when run as root with apt-get)")


def promtool(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd, check=False, timeout=60)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(d: dict) -> list[dict]:
    out = []
    for p in d["panels"]:
        out += [p, *p.get("panels", [])]
    return [p for p in out if p["type"] != "row"]


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in panels(dashboard()) for t in p["targets"]]


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def grafana_substituted(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def test_dashboard_is_what_the_builder_writes():
    spec = importlib.util.spec_from_file_location("build_dashboard", MONITORING / "grafana" / "build_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run `python monitoring/grafana/build_dashboard.py`"


def test_dashboard_shape_and_template_variables():
    d = dashboard()
    assert 36 <= d["schemaVersion"] <= 41 and d["uid"] and d["title"]
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("run", "track", "trial"):
        v = variables[name]
        assert v["type"] == "query" and v["multi"] and v["includeAll"] and v["allValue"] == ".*"
        assert "(ray_)?streamguard_" in v["definition"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels(d):
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), f"panel without a query: {p['title']}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_dashboard_has_the_panels_the_issue_asks_for():
    titles = {p["title"] for p in panels(dashboard())}
    for wanted in ("Loss", "Validation F1", "Throughput", "Checkpoint age", "Checkpoint duration", "Epoch and global step",
                   "Restarts (30 min window)", "Lost steps (1 h window)", "Train loss by rank", "Throughput by rank",
                   "Trials running", "Trials finished", "Best validation F1", "Validation F1 by trial"):
        assert wanted in titles, wanted


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_name_exists_and_matches_both_name_families(source):
    exprs = dashboard_queries() if source == "dashboard" else [r["expr"] for r in alert_rules()]
    exprs += [v["definition"] for v in dashboard()["templating"]["list"] if source == "dashboard" and "definition" in v]
    local, ray = set(exported_names("local")), set(exported_names("ray"))
    used = set()
    for expr in exprs:
        for ray_part, name in NAME.findall(expr):
            assert ray_part, f"{name} is matched without its Ray name (ray_{name}): {expr}"
            assert name in local and f"ray_{name}" in ray, f"{name} is not exported: {expr}"
            used.add(name)
    # everything the loop reports is on the dashboard
    if source == "dashboard":
        shorts = {n.removeprefix("streamguard_").removesuffix("_bucket") for n in used}
        assert set(LIVE_METRICS) <= shorts, set(LIVE_METRICS) - shorts


def test_exported_names_of_both_backends():
    local, ray = exported_names("local"), exported_names("ray")
    assert ray == [f"ray_{n}" for n in local]
    assert "streamguard_restarts_total" in local and "ray_streamguard_restarts_total" in ray
    assert "streamguard_checkpoint_duration_seconds_bucket" in local and "streamguard_train_loss" in local
    assert not any(n.endswith("_total_total") for n in local + ray)
    with pytest.raises(ValueError):
        exported_names("opencensus")


def test_alert_rules_are_documented_and_labelled():
    doc = DOC.read_text().lower()
    names = [r["alert"] for r in alert_rules()]
    assert {"StreamGuardTrainingStalled", "StreamGuardRestartsRising", "StreamGuardCheckpointStale"} <= set(names)
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert f"### {rule['alert'].lower()}" in doc and anchor == rule["alert"].lower()


def test_alert_unit_tests_cover_every_alert_with_both_name_families():
    spec = yaml.safe_load(ALERTS_TEST.read_text())
    covered: dict[str, set[str]] = {}
    for case in spec["tests"]:
        families = {"ray" if s["series"].startswith("ray_") else "local" for s in case["input_series"]}
        for check in case["alert_rule_test"]:
            covered.setdefault(check["alertname"], set()).update(families)
            covered[check["alertname"] + ":fires"] = covered.get(check["alertname"] + ":fires", set()) | (
                {"yes"} if check.get("exp_alerts") else {"no"})
    for rule in alert_rules():
        assert covered.get(rule["alert"]) == {"local", "ray"}, rule["alert"]
        assert covered[rule["alert"] + ":fires"] == {"yes", "no"}, rule["alert"]


@needs_promtool
def test_promtool_checks_the_alert_rules():
    proc = promtool("check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in proc.stdout


@needs_promtool
def test_promtool_alert_unit_tests_pass():
    proc = promtool("test", "rules", ALERTS_TEST.name, cwd=ALERTS_TEST.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    # promtool parses recording-rule expressions: a cheap offline PromQL syntax check.
    rules = [{"record": f"dashboard:query_{i}", "expr": grafana_substituted(q)} for i, q in enumerate(dashboard_queries())]
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
