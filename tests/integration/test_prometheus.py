"""A real Prometheus server (the Debian `prometheus` binary, on 127.0.0.1) scrapes live
training metrics and answers queries for them over its HTTP API:

- from a local training (`streamguard train`, prometheus_client exporter), while it runs;
- from Ray workers writing through `RayMetricsSink`, found through the service-discovery
  file Ray keeps in its temp dir (`ray_` in front of every name).

It also loads the shipped alert rules and runs every dashboard query against the live data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from streamguard.metrics import exported_names
from tests.conftest import REPO, cli_env, free_port
from tests.integration.helpers import TINY, sg
from tests.unit.test_monitoring import (
    ALERTS,
    alert_rules,
    dashboard,
    grafana_substituted,
    panels,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="the prometheus server binary is not installed: scripts/test.sh installs the Debian "
                              "`prometheus` package when run as root with apt-get; otherwise install it yourself"),
]


class Prometheus:
    """A private Prometheus: temp config and storage, 127.0.0.1 on a free port, 1 s scrapes."""

    def __init__(self, root: Path, scrape_configs: list[dict], rule_files: list[str] = ()):
        root.mkdir(parents=True, exist_ok=True)
        config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(f) for f in rule_files], "scrape_configs": scrape_configs}
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(root / "prometheus.log", "w")  # noqa: SIM115 (the server's lifetime)
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address={self.url.removeprefix('http://')}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}: {Path(self.log.name).read_text()[-2000:]}")
            try:
                if urllib.request.urlopen(f"{self.url}/-/ready", timeout=1).status == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("prometheus did not become ready")

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def wait_for_series(self, promql: str, wanted: set[str], timeout: float, alive=None) -> list[dict]:
        """Polls until the series of `promql` cover every name in `wanted`."""
        deadline, result = time.time() + timeout, []
        while time.time() < deadline:
            result = self.query(promql)
            if wanted <= {s["metric"]["__name__"] for s in result}:
                return result
            if alive is not None:
                alive()
            time.sleep(1)
        have = {s["metric"]["__name__"] for s in result}
        raise AssertionError(f"missing series after {timeout:.0f} s: {sorted(wanted - have)}; targets: "
                             f"{[(t['scrapeUrl'], t['health'], t['lastError']) for t in self.api('targets')['activeTargets']]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def _check_rules_evaluate(prom: Prometheus) -> None:
    """The shipped alert rules load and evaluate against the real series without errors."""
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    deadline = time.time() + 10
    while any(r.get("lastEvaluation", "").startswith("0001") for r in rules) and time.time() < deadline:
        time.sleep(1)  # not evaluated yet
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def _check_dashboard_queries(prom: Prometheus, must_have_data: set[str]) -> None:
    """Every dashboard query runs (no PromQL error, e.g. from mixing name families), and the
    named panels show data."""
    empty = []
    for panel in panels(dashboard()):
        for t in panel["targets"]:
            if not prom.query(grafana_substituted(t["expr"])) and panel["title"] in must_have_data:
                empty.append(panel["title"])
    assert not empty, f"panels without data: {empty}"


@pytest.fixture()
def prometheus_dir():
    root = Path(tempfile.mkdtemp(prefix="sgprom-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_prometheus_scrapes_a_running_local_training(tmp_path, prometheus_dir):
    port, run = free_port(), f"prom-{uuid.uuid4().hex[:8]}"
    # TINY settings, but enough epochs to still be running when we look; stopped below.
    overrides = [*TINY, "data.synthetic_size=400", "train.epochs=500", f"run.name={run}",
                 f"run.storage_path={tmp_path}", f"metrics.prometheus_port={port}"]
    train = subprocess.Popen(sg("train", "--preset", "quickstart", *overrides), cwd=REPO, env=cli_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    prom = None
    try:
        prom = Prometheus(prometheus_dir, [{"job_name": "streamguard",
                                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}], [ALERTS])

        def alive():
            if train.poll() is not None:
                raise AssertionError(f"training exited {train.returncode} early: {train.stderr.read()[-3000:]}")

        started = time.time()
        series = prom.wait_for_series(f'{{__name__=~"streamguard_.+", run="{run}"}}', set(exported_names("local")),
                                      timeout=240, alive=alive)
        alive()  # the training was scraped while it ran
        for s in series:
            labels = s["metric"]
            assert labels["run"] == run and labels["track"] == "gnn" and labels["rank"] == "0", labels
            assert "trial" not in labels  # empty outside a sweep; Prometheus drops empty labels
            assert labels["job"] == "streamguard" and labels["instance"] == f"127.0.0.1:{port}"
        step = prom.wait_for_series(f'streamguard_global_step{{run="{run}"}} > 0', {"streamguard_global_step"}, 60,
                                    alive)
        assert float(step[0]["value"][1]) > 0
        _check_rules_evaluate(prom)
        _check_dashboard_queries(prom, {"Global step", "Epoch", "Validation F1", "Checkpoint age", "Loss",
                                        "Throughput", "Epoch and global step", "Learning rate", "Train loss by rank",
                                        "Throughput by rank", "Global step by rank", "Restarts in range"})
        alive()
        print(f"local: {len(series)} series scraped after {time.time() - started:.0f} s")
    finally:
        if train.poll() is None:
            train.send_signal(signal.SIGTERM)  # the preemption path: checkpoint, then exit 143
            try:
                train.wait(60)
            except subprocess.TimeoutExpired:
                train.kill()
                train.wait(10)
        if prom is not None:
            prom.stop()


# A Ray driver in its own process: a private local Ray (never joins another cluster on the
# host, and leaves any Ray of the test process alone), two actors as ranks 0 and 1 writing
# through RayMetricsSink. It prints READY, then waits until the test closes its stdin.
RAY_DRIVER = r"""
import os, sys
import ray
temp, metrics_port, dashboard_port, run = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ray.init(address="local", num_cpus=1, include_dashboard=True, dashboard_host="127.0.0.1",
         dashboard_port=dashboard_port, _metrics_export_port=metrics_port, _temp_dir=temp,
         log_to_driver=False, configure_logging=False)

@ray.remote(num_cpus=0)
class Rank:
    def __init__(self, rank):
        from streamguard.distributed.metrics import RayMetricsSink
        self.rank = rank
        self.sink = RayMetricsSink({"run": run, "track": "gnn", "trial": "t0", "rank": str(rank)}, refresh_seconds=1)

    def report(self):
        self.sink.write({"restarts_total": 1, "lost_steps_total": 0})
        self.sink.write({"train_loss": 0.5 + self.rank, "val_loss": 0.6, "val_f1": 0.8, "samples_per_second": 900.0,
                         "epoch": 2, "global_step": 40, "learning_rate": 1e-3, "checkpoint_duration_seconds": 0.2,
                         "lost_steps_total": 3})
        return os.getpid()

ranks = [Rank.remote(r) for r in range(2)]
print("READY", ray.get([r.report.remote() for r in ranks]), flush=True)
sys.stdin.read()
ray.shutdown()
"""


def _kill_leftovers(marker: str) -> None:
    """SIGKILL the processes of our own Ray (their command lines name our temp dir), by PID."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def test_prometheus_scrapes_ray_workers_through_service_discovery(prometheus_dir):
    pytest.importorskip("ray")
    temp = tempfile.mkdtemp(prefix="sgray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    metrics_port, run = free_port(), f"ray-{uuid.uuid4().hex[:8]}"
    env = {**cli_env(), "RAY_metrics_report_interval_ms": "1000"}  # export every second, not every 10
    env.pop("RAY_ADDRESS", None)
    driver = subprocess.Popen([sys.executable, "-c", RAY_DRIVER, temp, str(metrics_port), str(free_port()), run],
                              cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    prom = None
    try:
        line = driver.stdout.readline()
        assert line.startswith("READY"), f"ray driver failed: {line}{driver.stderr.read()[-3000:]}"
        sd_file = Path(temp) / "prom_metrics_service_discovery.json"
        deadline = time.time() + 60
        while not (sd_file.exists() and f":{metrics_port}" in sd_file.read_text()) and time.time() < deadline:
            time.sleep(0.5)
        # Ray lists each live node's address (the node IP, which Ray picks) and export port.
        targets = [t for group in json.loads(sd_file.read_text()) for t in group["targets"]]
        assert any(t.endswith(f":{metrics_port}") for t in targets), targets

        prom = Prometheus(prometheus_dir, [{"job_name": "ray", "file_sd_configs": [
            {"files": [str(sd_file)], "refresh_interval": "5s"}]}], [ALERTS])
        wanted = set(exported_names("ray"))
        series = prom.wait_for_series(f'{{__name__=~"ray_streamguard_.+", run="{run}"}}', wanted, timeout=90)
        for rank in ("0", "1"):
            names = {s["metric"]["__name__"] for s in series if s["metric"]["rank"] == rank}
            assert names == wanted, f"rank {rank}: {sorted(wanted ^ names)}"
        for s in series:
            labels = s["metric"]
            assert (labels["run"], labels["track"], labels["trial"]) == (run, "gnn", "t0"), labels
            assert labels["job"] == "ray" and "WorkerId" in labels
        value = {(s["metric"]["__name__"], s["metric"]["rank"]): float(s["value"][1]) for s in series}
        assert value[("ray_streamguard_restarts_total", "0")] == 1  # one `_total`, counted once
        assert value[("ray_streamguard_lost_steps_total", "1")] == 3  # the 0 increment was skipped
        assert value[("ray_streamguard_train_loss", "1")] == 1.5
        # the daemon thread keeps checkpoint_age_seconds moving with no report
        age = f'ray_streamguard_checkpoint_age_seconds{{run="{run}", rank="0"}}'
        first = float(prom.query(age)[0]["value"][1])
        deadline = time.time() + 30
        while float(prom.query(age)[0]["value"][1]) <= first and time.time() < deadline:
            time.sleep(1)
        assert float(prom.query(age)[0]["value"][1]) > first
        _check_rules_evaluate(prom)
        _check_dashboard_queries(prom, {"Global step", "Validation F1", "Checkpoint age", "Loss", "Throughput",
                                        "Train loss by rank", "Throughput by rank", "Trials running",
                                        "Best validation F1", "Best validation F1 by trial", "Validation F1 by trial",
                                        "Restarts in range"})
        running = prom.query(grafana_substituted(next(t["expr"] for p in panels(dashboard())
                                                      if p["title"] == "Trials running" for t in p["targets"])))
        assert float(running[0]["value"][1]) == 1
    finally:
        if driver.poll() is None:
            driver.stdin.close()  # the driver shuts its Ray down
            try:
                driver.wait(60)
            except subprocess.TimeoutExpired:
                driver.kill()
                driver.wait(10)
        _kill_leftovers(temp)
        if prom is not None:
            prom.stop()
        shutil.rmtree(temp, ignore_errors=True)
