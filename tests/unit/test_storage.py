import boto3
import pytest

from streamguard.checkpoint import CheckpointStore
from streamguard.errors import StorageError
from streamguard.storage import open_storage
from tests.unit.test_checkpoint import _commit


def test_local_storage_basics(tmp_path):
    st = open_storage(str(tmp_path / "root"))
    st.write_bytes("a/b.txt", b"hi")
    assert st.read_bytes("a/b.txt") == b"hi"
    assert st.list() == ["a"] and st.list("a") == ["b.txt"]
    assert st.child("a").exists("b.txt")
    st.delete("a")
    assert not st.exists("a")


def test_s3_storage_basics(s3_env):
    st = open_storage(f"s3://{s3_env['bucket']}/runs/x")
    st.write_bytes("a/b.txt", b"hi")
    assert st.read_bytes("a/b.txt") == b"hi"
    assert st.list() == ["a"] and st.list("a") == ["b.txt"]
    assert st.child("a").read_bytes("b.txt") == b"hi"
    st.delete("a")
    assert st.list() == []


def test_checkpoints_on_s3_behave_like_local(s3_env, tmp_path):
    store = CheckpointStore(open_storage(f"s3://{s3_env['bucket']}/run/checkpoints"), keep_last=2)
    for step, metric in ((1, 0.9), (2, 0.1), (3, 0.2), (4, 0.3)):
        _commit(store, tmp_path, step, metric)
    assert store.names() == ["step_000000001", "step_000000003", "step_000000004"]
    # corrupt the newest in S3: truncated weights
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    key = "run/checkpoints/step_000000004/model.safetensors"
    body = s3.get_object(Bucket=s3_env["bucket"], Key=key)["Body"].read()
    s3.put_object(Bucket=s3_env["bucket"], Key=key, Body=body[:64])
    assert store.latest_valid(tmp_path / "scratch").name == "step_000000003"
    assert store.best_valid(tmp_path / "scratch2").name == "step_000000001"


def test_unreachable_endpoint_is_one_clear_error(monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    with pytest.raises(StorageError, match=r"cannot reach S3 endpoint http://127.0.0.1:\d+ .*storage.endpoint_url"):
        open_storage("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{free_port()}", connect_timeout_s=1, max_attempts=1)


def test_missing_bucket_and_bad_uri(s3_env):
    with pytest.raises(StorageError, match="bucket 'nope-bucket' does not exist"):
        open_storage("s3://nope-bucket/x")
    with pytest.raises(StorageError, match="unsupported storage URI"):
        open_storage("gs://bucket/x")


def test_wrong_credentials_are_one_clear_error(monkeypatch):
    """A server that checks credentials (moto with auth enforced from the first request)."""
    from tests.conftest import start_moto

    pytest.importorskip("moto")
    proc, endpoint = start_moto(INITIAL_NO_AUTH_ACTION_COUNT="0")
    try:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        with pytest.raises(StorageError, match=r"S3 rejected the credentials for s3://bucket .*AWS_ACCESS_KEY_ID"):
            open_storage("s3://bucket/p", endpoint_url=endpoint, max_attempts=1)
    finally:
        proc.terminate()
        proc.wait(10)
