"""Local directories and `s3://bucket/prefix` (AWS or any S3-compatible endpoint) behind
one small interface, so checkpoint discovery and retention never care about the backend.

Keys are `/`-separated and relative to the storage root. The S3 endpoint comes from the
caller (config `storage.endpoint_url`) or the standard AWS environment variables
(`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ..., IRSA web identity), which boto3 reads itself.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from streamguard.errors import StorageError


class Storage(Protocol):
    uri: str

    def child(self, key: str) -> "Storage": ...
    def list(self, key: str = "") -> list[str]: ...
    def exists(self, key: str) -> bool: ...
    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def upload_file(self, local_path: str | Path, key: str) -> None: ...
    def download_file(self, key: str, local_path: str | Path) -> None: ...
    def delete(self, key: str) -> None: ...
    def local_path(self, key: str = "") -> Path | None: ...


def atomic_write(path: str | Path, data: bytes) -> None:
    """tmp file in the same directory + fsync + rename: readers see the old file or the
    whole new one, never half of it, even after a SIGKILL. The one place that does this."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; run artefacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB blocks: the one checksum of checkpoints, bundles and
    downloaded backbones."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(path: str | Path) -> dict:
    """A manifest entry: the file's sha256 and size."""
    return {"sha256": sha256_file(path), "size": Path(path).stat().st_size}


def file_problem(root: str | Path, files: dict[str, dict]) -> str | None:
    """The first file of a manifest (`{relative path: file_entry}`) that is missing, has the
    wrong size or fails its sha256, described for an error message; None if all verify."""
    for rel, meta in files.items():
        path = Path(root) / rel
        if not path.is_file():
            return f"{rel} is listed in the manifest but missing"
        if path.stat().st_size != meta["size"]:
            return f"{rel} has {path.stat().st_size} bytes, the manifest says {meta['size']} (truncated or altered)"
        if sha256_file(path) != meta["sha256"]:
            return f"{rel} fails its sha256 check (altered or corrupt)"
    return None


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts if p)])


def open_storage(
    uri: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    connect_timeout_s: float = 5.0,
    max_attempts: int = 3,
) -> Storage:
    """`s3://...` -> S3Storage (checked for reachability and credentials now, so a bad
    endpoint fails at start-up, not at the first checkpoint); anything else -> local."""
    if is_s3(uri):
        return S3Storage(uri, endpoint_url=endpoint_url, region=region,
                         connect_timeout_s=connect_timeout_s, max_attempts=max_attempts)
    if "://" in uri:
        raise StorageError(f"unsupported storage URI {uri!r}: use a local path or s3://bucket/prefix")
    return LocalStorage(uri)


class LocalStorage:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key if key else self.root

    def child(self, key: str) -> "LocalStorage":
        return LocalStorage(self._path(key))

    def list(self, key: str = "") -> list[str]:
        path = self._path(key)
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {self._path(key)}: {exc.strerror}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise StorageError(f"cannot write {path}: {exc.strerror}") from None

    def upload_file(self, local_path: str | Path, key: str) -> None:
        dest = self._path(key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp")
            shutil.copyfile(local_path, tmp)
            os.replace(tmp, dest)
        except OSError as exc:
            raise StorageError(f"cannot write {dest}: {exc.strerror}") from None

    def download_file(self, key: str, local_path: str | Path) -> None:
        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(self._path(key), local_path)
        except OSError as exc:
            raise StorageError(f"cannot read {self._path(key)}: {exc.strerror}") from None

    def delete(self, key: str) -> None:
        path = self._path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()

    def local_path(self, key: str = "") -> Path:
        return self._path(key)


class S3Storage:
    def __init__(self, uri: str, *, endpoint_url: str | None, region: str | None,
                 connect_timeout_s: float, max_attempts: int):
        try:
            import boto3
            from botocore.config import Config as BotoConfig
        except ImportError:
            raise StorageError("s3:// storage needs boto3: pip install 'streamguard[s3]'") from None
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise StorageError(f"bad S3 URI {uri!r}: expected s3://bucket/prefix")
        self.uri, self.bucket, self.prefix = uri.rstrip("/"), bucket, prefix.strip("/")
        self.endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        boto_config = BotoConfig(connect_timeout=connect_timeout_s, read_timeout=max(30.0, connect_timeout_s),
                                 retries={"max_attempts": max_attempts, "mode": "standard"})
        self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name=region, config=boto_config)
        self._check()

    @classmethod
    def _from_parent(cls, parent: "S3Storage", prefix: str) -> "S3Storage":
        new = cls.__new__(cls)
        new.bucket, new.prefix, new.endpoint, new._client = parent.bucket, prefix, parent.endpoint, parent._client
        new.uri = f"s3://{parent.bucket}/{prefix}".rstrip("/")
        return new

    def _where(self) -> str:
        return f"endpoint {self.endpoint}" if self.endpoint else "the default AWS endpoint"

    def _check(self) -> None:
        """One cheap call so bad endpoints and credentials fail now, with a clear message."""
        self._call(self._client.head_bucket, Bucket=self.bucket)

    def _call(self, fn, **kwargs):
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
        )

        try:
            return fn(**kwargs)
        except EndpointConnectionError:
            raise StorageError(
                f"cannot reach S3 {self._where()} for s3://{self.bucket}: check storage.endpoint_url "
                "or AWS_ENDPOINT_URL and that the server is running") from None
        except NoCredentialsError:
            raise StorageError(
                f"no AWS credentials for s3://{self.bucket}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "mount a Kubernetes Secret, or use IRSA") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"}:
                raise StorageError(f"S3 rejected the credentials for s3://{self.bucket} ({code}) at {self._where()}: "
                                   "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the IRSA role") from None
            if code in {"NoSuchBucket", "404"} and "Key" not in kwargs:
                raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {self._where()}: create it first") from None
            raise
        except BotoCoreError as exc:
            raise StorageError(f"S3 request to {self._where()} failed: {exc}") from None

    def _key(self, key: str) -> str:
        return "/".join(p for p in (self.prefix, key.strip("/")) if p)

    def child(self, key: str) -> "S3Storage":
        return S3Storage._from_parent(self, self._key(key))

    def list(self, key: str = "") -> list[str]:
        prefix = self._key(key)
        prefix = prefix + "/" if prefix else ""
        names: set[str] = set()
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call(lambda **kw: list(paginator.paginate(**kw)), Bucket=self.bucket, Prefix=prefix, Delimiter="/")
        for page in pages:
            names.update(p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(prefix):] for o in page.get("Contents", []))
        return sorted(n for n in names if n)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(self._client.head_object, Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError:
            return bool(self.list(key))  # a "directory" exists if anything is under it

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self._call(self._client.get_object, Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{self._key(key)}: {exc.response['Error'].get('Code')}") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        # A single PUT is atomic in S3: readers see the old object or the whole new one.
        self._call(self._client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data)

    def upload_file(self, local_path: str | Path, key: str) -> None:
        self._call(self._client.upload_file, Filename=str(local_path), Bucket=self.bucket, Key=self._key(key))

    def download_file(self, key: str, local_path: str | Path) -> None:
        from botocore.exceptions import ClientError

        Path(local_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._call(self._client.download_file, Bucket=self.bucket, Key=self._key(key), Filename=str(local_path))
        except ClientError as exc:
            raise StorageError(f"cannot read s3://{self.bucket}/{self._key(key)}: {exc.response['Error'].get('Code')}") from None

    def delete(self, key: str) -> None:
        base = self._key(key)
        paginator = self._client.get_paginator("list_objects_v2")
        keys = [base] + [o["Key"] for page in paginator.paginate(Bucket=self.bucket, Prefix=base + "/")
                         for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start:start + 1000]]
            self._call(self._client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})

    def local_path(self, key: str = "") -> None:
        return None
