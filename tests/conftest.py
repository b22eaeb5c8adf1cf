"""Shared fixtures. Servers are real and bound to 127.0.0.1, started by the tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Prepared-data cache for this test session (inherited by CLI subprocesses): shared
# between tests for speed, never the user's ~/.cache.
if "STREAMGUARD_CACHE" not in os.environ:
    import tempfile

    os.environ["STREAMGUARD_CACHE"] = tempfile.mkdtemp(prefix="streamguard-test-cache-")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(**env) -> tuple[subprocess.Popen, str]:
    """moto in server mode, in its own process on 127.0.0.1, reached over HTTP like any S3 endpoint."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **env})
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("moto server did not start")


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto")
    proc, endpoint = start_moto()
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def s3_env(s3_server, monkeypatch):
    """Credentials and endpoint in the environment (inherited by subprocesses), plus a fresh bucket."""
    import uuid

    import boto3

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_server}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"sg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    return {"endpoint": s3_server, "bucket": bucket, "env": env}


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("RANK", None)
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


@pytest.fixture(scope="session")
def ray_local():
    """A private local Ray instance (own temp dir, never joins another cluster on the host)."""
    ray = pytest.importorskip("ray")
    import tempfile

    temp = tempfile.mkdtemp(prefix="sgray", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=str(temp), configure_logging=False)
    yield ray
    ray.shutdown()
