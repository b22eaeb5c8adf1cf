"""The chaos harness: Ray Train on a real 3-node Ray cluster (head + 2 one-CPU worker nodes)
with checkpoints on moto's S3 server, and real processes killed underneath it.

Every scenario runs the quickstart GNN (small) with 2 workers on 2 nodes through the real
CLI (`streamguard train --ray --address ...`) and checks the final metrics. The cluster is
shared by the tests of this module (Ray start-up is ~10-30 s on 2 cores).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid

import boto3
import pytest
from safetensors.torch import load as load_safetensors

from tests.conftest import REPO, cli_env
from tests.integration.helpers import run_cli, sg, wait_for

pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(900)

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# Small and deterministic; 12 steps per epoch per worker, a checkpoint every 5 steps, live
# progress every step (so the lost-step counts are exact).
EPOCHS = 3
RUN = ["data.synthetic_size=480", "model.gnn.hidden=32", "model.gnn.layers=2", f"train.epochs={EPOCHS}",
       "train.batch_size=16", "train.early_stopping_patience=0", "metrics.plots=false", "run.deterministic=true",
       "checkpoint.every_n_steps=5", "checkpoint.keep_last=3", "metrics.report_interval_s=0.001",
       "ray.num_workers=2"]


@pytest.fixture(scope="module")
def cluster(s3_server):
    from streamguard.distributed.local_cluster import LocalCluster

    # Ray exports application metrics every second (default 10 s) for the Prometheus check.
    c = LocalCluster(worker_nodes=2, env={**CREDS, "AWS_ENDPOINT_URL": s3_server,
                                          "RAY_metrics_report_interval_ms": "1000"})
    yield c
    c.shutdown()


@pytest.fixture()
def bucket(s3_server):
    name = f"sg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server, **_creds()).create_bucket(Bucket=name)
    return name


def _creds():
    return {"aws_access_key_id": CREDS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": CREDS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDS["AWS_DEFAULT_REGION"]}


class Run:
    """One run name on the shared cluster: start the CLI driver, look at its S3 state."""

    def __init__(self, cluster, s3_server, bucket, name, *extra):
        self.cluster, self.bucket, self.name = cluster, bucket, name
        self.s3 = boto3.client("s3", endpoint_url=s3_server, **_creds())
        self.env = cli_env(**CREDS, AWS_ENDPOINT_URL=s3_server)
        self.args = ["train", "--ray", "--address", cluster.address, *RUN, f"run.storage_path=s3://{bucket}/runs",
                     f"run.name={name}", *extra]
        self.prefix = f"runs/{name}/"

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(sg(*self.args), cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

    def run(self, **kw) -> subprocess.CompletedProcess:
        return run_cli(*self.args, env=self.env, timeout=600, **kw)

    def committed(self) -> list[str]:
        resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "checkpoints/")
        return sorted({o["Key"].split("/")[3] for o in resp.get("Contents", []) if o["Key"].endswith("/MANIFEST.json")})

    def progress(self) -> int:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=self.prefix + "progress.json")["Body"].read()
            return json.loads(body)["global_step"]
        except self.s3.exceptions.NoSuchKey:
            return 0

    def json(self, rel: str) -> dict:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=self.prefix + rel)["Body"].read())

    def final_weights(self) -> dict:
        newest = self.committed()[-1]
        return load_safetensors(self.s3.get_object(Bucket=self.bucket,
                                                   Key=f"{self.prefix}checkpoints/{newest}/model.safetensors")["Body"].read())


def _step(name: str) -> int:
    return int(name.split("_")[1])


def _assert_finished(run: Run, *, min_resumes: int) -> dict:
    metrics = run.json("metrics.json")
    assert metrics["n_samples"] > 0 and 0.0 <= metrics["f1_at_best_threshold"] <= 1.0
    assert len(metrics["resumes"]) >= min_resumes, metrics["resumes"]
    state = json.loads(run.s3.get_object(Bucket=run.bucket, Key=f"{run.prefix}checkpoints/{run.committed()[-1]}/"
                                         "state.json")["Body"].read())
    assert state["completed"] and state["epoch"] == EPOCHS
    return metrics


def _wait_mid_run(run: Run, proc, at_least: int = 7):
    """Until training is past its first checkpoint and a couple of steps into the next interval."""
    wait_for(lambda: run.committed() and run.progress() >= at_least, timeout=240, what="training under way", proc=proc)


def _wait_resumed(run: Run, proc, after: str):
    """Until the restarted group has committed a checkpoint newer than `after` and is two steps
    past it (so a second fault lands in a new interval of the resumed run)."""
    def resumed():
        names = run.committed()
        return names and _step(names[-1]) > _step(after) and run.progress() >= _step(names[-1]) + 2
    wait_for(resumed, timeout=300, what="training resumed and past a new checkpoint", proc=proc)


def _assert_same_weights(got: dict, want: dict) -> None:
    import torch

    assert want.keys() == got.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)


def test_worker_sigkill_then_sigterm_resume_exactly(cluster, s3_server, bucket, tmp_path):
    """Two faults in one run: a worker is SIGKILLed (the group restarts from the newest
    checkpoint, losing at most one interval), then a worker of the restarted group gets
    SIGTERM (the spot notice: a checkpoint at the next step, nothing lost). The run still
    ends with the weights of the uninterrupted reference run, and a real Prometheus saw it."""
    reference = Run(cluster, s3_server, bucket, "reference")
    reference.run()
    prom = _prometheus(cluster, tmp_path)
    run = Run(cluster, s3_server, bucket, "kill-worker")
    proc = run.start()
    _wait_mid_run(run, proc)
    pid, _ = sorted(cluster.train_workers().items())[-1]
    newest, progress = run.committed()[-1], run.progress()
    psutil_kill(pid, signal.SIGKILL)
    _wait_resumed(run, proc, after=newest)
    restarted = set(cluster.train_workers())
    assert pid not in restarted
    psutil_kill(sorted(restarted)[0], signal.SIGTERM)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    metrics = _assert_finished(run, min_resumes=2)
    kill, notice = metrics["resumes"][:2]
    assert kill["from_step"] >= _step(newest)  # the newest checkpoint, not an older one
    assert kill["lost_steps"] <= 5 + (progress - _step(newest))  # at most one checkpoint interval (+ in-flight)
    assert notice["lost_steps"] <= 1, metrics["resumes"]
    assert notice["from_step"] % 5 != 0 or "received SIGTERM" in out  # an unscheduled, just-in-time checkpoint
    # Resume equivalence: the twice interrupted run ends with the weights of the uninterrupted one.
    _assert_same_weights(run.final_weights(), reference.final_weights())
    if prom is not None:  # a real Prometheus scraped the workers through Ray's service discovery
        try:
            sel = 'run="kill-worker", track="gnn"'
            assert float(prom.query(f"max(max_over_time(ray_streamguard_global_step{{{sel}}}[15m]))")[0]["value"][1]) \
                == EPOCHS * 12
            assert float(prom.query(f'sum(ray_streamguard_restarts_total{{{sel}, rank="0"}})')[0]["value"][1]) >= 1
            ranks = {r["metric"]["rank"] for r in prom.query(f"count by (rank) (count_over_time("
                                                              f"ray_streamguard_train_loss{{{sel}}}[15m]))")}
            assert ranks == {"0", "1"}
        finally:
            prom.stop()


def _prometheus(cluster, root):
    """The Debian Prometheus server on 127.0.0.1, scraping every node Ray lists in its
    service-discovery file; None (the Prometheus part is skipped) without the binary."""
    import shutil
    from pathlib import Path

    if shutil.which("prometheus") is None:
        return None
    from tests.integration.test_prometheus import Prometheus

    sd_file = Path(cluster.temp_dir) / "prom_metrics_service_discovery.json"
    wait_for(sd_file.exists, timeout=60, what="Ray's Prometheus service-discovery file")
    return Prometheus(root / "prometheus", [{"job_name": "ray", "file_sd_configs": [
        {"files": [str(sd_file)], "refresh_interval": "2s"}]}])


def test_node_drain_notice_then_node_loss_complete(cluster, s3_server, bucket):
    """Two node faults in one run. First `ray drain-node --reason PREEMPTION`, the spot notice
    Ray itself sees (KubeRay's preStop hook sends it): the loop checkpoints at the next step
    and the group restarts on the remaining nodes, losing no step; the drained node is then
    killed, as the cloud would. Then a node of the restarted group dies without notice (its
    raylet and workers SIGKILLed) and a fresh node replaces it: the group restarts from the
    newest checkpoint and completes."""
    run = Run(cluster, s3_server, bucket, "drain")
    proc = run.start()
    _wait_mid_run(run, proc)
    victim = next(iter(cluster.train_workers().values()))
    spare = cluster.add_spare_node()
    drain = subprocess.run([_ray_cli(), "drain-node", "--address", cluster.address, "--node-id", victim.node_id,
                            "--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", "spot reclaim (test)",
                            "--deadline-remaining-seconds", "60"], capture_output=True, text=True, timeout=60,
                           env=cli_env())
    assert drain.returncode == 0, drain.stdout + drain.stderr
    wait_for(lambda: victim.node_id not in {n.node_id for n in cluster.train_workers().values()}
             and cluster.train_workers(), timeout=240, what="workers moved off the drained node", proc=proc)
    cluster.retire_node(victim)
    _wait_resumed(run, proc, after=run.committed()[-1])
    lost = next(n for n in cluster.train_workers().values() if n is not spare)
    newest, progress = run.committed()[-1], run.progress()
    cluster.replace_node(lost)  # SIGKILL the raylet and its workers, then add a fresh node
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    metrics = _assert_finished(run, min_resumes=2)
    assert metrics["resumes"][0]["lost_steps"] == 0, metrics["resumes"]
    loss = metrics["resumes"][1]
    assert loss["from_step"] >= _step(newest) and loss["lost_steps"] <= 5 + (progress - _step(newest)), metrics["resumes"]
    assert spare in cluster.workers and lost not in cluster.workers


def _ray_cli() -> str:
    return str(REPO / ".venv/bin/ray") if (REPO / ".venv/bin/ray").exists() else "ray"


def test_driver_sigterm_sigkill_and_corrupt_checkpoint_resume_from_s3(cluster, s3_server, bucket):
    run = Run(cluster, s3_server, bucket, "driver")
    # 1. SIGTERM to the driver: workers checkpoint at the next step, the driver exits 143.
    proc = run.start()
    _wait_mid_run(run, proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, out[-4000:]
    stopped_at = _step(run.committed()[-1])
    assert stopped_at >= run.progress() - 1
    # 2. The same command again resumes from S3; SIGKILL its driver mid-way.
    proc = run.start()
    wait_for(lambda: _step(run.committed()[-1]) > stopped_at + 5, timeout=300, what="progress after resume", proc=proc)
    proc.kill()
    proc.communicate(timeout=60)
    # 3. Corrupt the newest checkpoint in S3: the next driver falls back to the previous one.
    names = run.committed()
    newest, previous = names[-1], names[-2]
    key = f"{run.prefix}checkpoints/{newest}/model.safetensors"
    body = run.s3.get_object(Bucket=run.bucket, Key=key)["Body"].read()
    run.s3.put_object(Bucket=run.bucket, Key=key, Body=body[: len(body) // 2])
    time.sleep(2)  # let Ray reap the killed job's workers
    done = run.run()
    assert f"skipping checkpoint {newest}" in done.stderr
    assert f"resuming from checkpoint {previous}" in done.stderr
    metrics = _assert_finished(run, min_resumes=2)
    assert metrics["resumes"][0]["from_step"] == stopped_at and metrics["resumes"][0]["lost_steps"] == 0


def test_ray_job_submit_runs_the_entrypoint(cluster, tmp_path):
    env = cli_env(RAY_ADDRESS=cluster.dashboard_url)
    storage = tmp_path / "runs"
    cmd = ["ray", "job", "submit", "--working-dir", str(REPO), "--", "python", "ray_jobs/train.py", "--preset",
           "quickstart", "data.synthetic_size=240", "model.gnn.hidden=16", "model.gnn.layers=1", "train.epochs=1",
           "metrics.plots=false", f"run.storage_path={storage}", "run.name=job", "ray.num_workers=2"]
    proc = subprocess.run([_ray_cli(), *cmd[1:]],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "succeeded" in proc.stdout
    metrics = json.loads((storage / "job" / "metrics.json").read_text())
    assert metrics["n_samples"] > 0


def psutil_kill(pid: int, sig: int) -> None:
    import os

    os.kill(pid, sig)


def test_ray_cli_errors_are_one_line_and_fast():
    from tests.conftest import free_port

    proc = run_cli("train", "--ray", "--address", f"127.0.0.1:{free_port()}", check=False, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach the Ray cluster at '127.0.0.1:")
    proc = run_cli("train", "--num-workers", "2", check=False, timeout=60)
    assert proc.returncode == 2 and "need --ray" in proc.stderr
    proc = run_cli("train", "--no-such-option", check=False, timeout=60)
    assert proc.returncode == 2 and "No such option: --no-such-option" in proc.stderr and "Traceback" not in proc.stderr


def test_sweep_restores_after_driver_sigkill_on_s3(cluster, s3_server, bucket, tmp_path):
    """Kill a sweep's driver mid-way and start the same command again: finished trials are
    kept, the unfinished one resumes from its own checkpoint, and Optuna continues (a
    from-scratch restart with the same seed would propose the first trials' params again)."""
    from tests.integration.test_tune import SMALL, write_sweep

    sweep = write_sweep(tmp_path / "sweep.yaml", "restore", samples=3, scheduler="fifo", epochs=3)
    args = ["tune", "--sweep", str(sweep), "--address", cluster.address, *SMALL, "checkpoint.every_n_steps=3",
            "metrics.report_interval_s=0.2", f"run.storage_path=s3://{bucket}/sweeps"]
    s3 = boto3.client("s3", endpoint_url=s3_server, **_creds())
    env = cli_env(**CREDS, AWS_ENDPOINT_URL=s3_server)
    prefix = "sweeps/restore/runs/"

    def keys():
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return {o["Key"][len(prefix):]: o["ETag"] for o in resp.get("Contents", [])}

    def state():
        k = keys()
        trials = {p.split("/")[0] for p in k}
        done = {t for t in trials if f"{t}/metrics.json" in k}
        running = {t for t in trials - done if any(p.startswith(f"{t}/checkpoints/") and p.endswith("MANIFEST.json")
                                                   for p in k)}
        return k, done, running

    proc = subprocess.Popen(sg(*args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: (lambda _, d, r: len(d) >= 1 and len(r) >= 1)(*state()), timeout=400,
             what="a finished trial and a running one with a checkpoint", proc=proc)
    before, done, running = state()
    proc.kill()
    proc.communicate(timeout=60)
    time.sleep(3)

    again = run_cli(*args, env=env, timeout=800)
    assert "(restored)" in again.stdout
    table = pd_read_parquet(s3, bucket, "sweeps/restore/results.parquet")
    assert len(table) == 3 and table["finished"].all(), table
    after = keys()
    for trial in done:  # kept: neither trained nor scored again
        assert after[f"{trial}/metrics.json"] == before[f"{trial}/metrics.json"]
        assert {p for p in after if p.startswith(f"{trial}/checkpoints/")} <= set(before)
    for trial in running:  # resumed from its own checkpoint, not restarted
        metrics = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}{trial}/metrics.json")["Body"].read())
        assert metrics["resumes"] and metrics["resumes"][0]["from_step"] > 0, metrics["resumes"]
    params = table[["param:optim.lr", "param:model.gnn.hidden"]].astype(str).agg("|".join, axis=1)
    assert params.is_unique, params.tolist()


def pd_read_parquet(s3, bucket, key):
    import io

    import pandas as pd

    return pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
