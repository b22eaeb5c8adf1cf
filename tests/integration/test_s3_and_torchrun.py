"""Runs on s3:// (moto's server over HTTP) and under torchrun with gloo."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import boto3

from tests.conftest import REPO, cli_env
from tests.integration.helpers import TINY, read_json, run_cli, sg, wait_for


def _s3_committed(s3, bucket, prefix):
    resp = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted({o["Key"][len(prefix):].split("/")[0] for o in resp.get("Contents", [])
                   if o["Key"].endswith("/MANIFEST.json")})


def test_s3_run_checkpoints_resumes_and_falls_back_like_local(s3_env, tmp_path):
    bucket, endpoint = s3_env["bucket"], s3_env["endpoint"]
    s3 = boto3.client("s3", endpoint_url=endpoint)
    env = cli_env(**s3_env["env"])
    args = ["train", "--output", f"s3://{bucket}/runs", "run.name=s3run", *TINY, "checkpoint.every_n_steps=4"]
    prefix = "runs/s3run/checkpoints/"

    proc = subprocess.Popen(sg(*args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(_s3_committed(s3, bucket, prefix)) >= 2, what="checkpoints in S3", proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    # corrupt the newest checkpoint in S3 before the restart
    newest = _s3_committed(s3, bucket, prefix)[-1]
    key = f"{prefix}{newest}/model.safetensors"
    s3.put_object(Bucket=bucket, Key=key, Body=s3.get_object(Bucket=bucket, Key=key)["Body"].read()[:100])

    resumed = run_cli(*args, env=env)
    assert f"skipping checkpoint {newest}" in resumed.stderr
    assert "resuming from checkpoint step_" in resumed.stderr
    metrics = json.loads(s3.get_object(Bucket=bucket, Key="runs/s3run/metrics.json")["Body"].read())
    assert metrics["n_samples"] > 0
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/s3run/")["Contents"]}
    assert {"runs/s3run/config.yaml", "runs/s3run/history.json", "runs/s3run/run_info.json"} <= keys
    assert f"s3://{bucket}/runs/s3run" in resumed.stdout


def test_unreachable_s3_endpoint_exits_with_one_line(tmp_path):
    from tests.conftest import free_port

    env = cli_env(AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y", AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")
    proc = run_cli("train", "--output", "s3://bucket/runs", "storage.connect_timeout_s=1", "storage.max_attempts=1",
                   env=env, check=False, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot reach S3 endpoint http://127.0.0.1:")


def test_torchrun_two_processes_gloo(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "streamguard", "train", "--preset", "quickstart", "--output", str(tmp_path), "run.name=ddp", *TINY,
           "train.epochs=2"]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    history = read_json(tmp_path / "ddp" / "history.json")
    assert len(history) == 2
    # each rank sees half of the training set: steps per epoch halve compared to one process
    run_cli("train", "--output", str(tmp_path), "run.name=single", *TINY, "train.epochs=1")
    single = read_json(tmp_path / "single" / "history.json")
    assert history[0]["global_step"] * 2 in (single[0]["global_step"], single[0]["global_step"] + 1)
    info = read_json(tmp_path / "ddp" / "run_info.json")
    assert info["world_size"] == 2
    assert "[rank 1]" not in proc.stderr or "INFO [rank 1]" not in proc.stderr
