"""Versioned bundles on S3 (or a local directory): `streamguard export --to s3://bucket/models/NAME`
and `streamguard predict s3://bucket/models/NAME@VERSION|@latest`.

    s3://bucket/models/NAME/index.json        every version: sha256, track, threshold, metrics,
                                              data manifest hash, run, created; and `latest`
    s3://bucket/models/NAME/v0001/...         a bundle (MANIFEST.json uploaded last)
    s3://bucket/models/NAME/v0002/...

A version is immutable: publishing always adds the next number. The index is rebuilt from
the committed version folders (those with a MANIFEST.json) on every publish, so a publish
that died half-way leaves no version behind and never a wrong index. `predict` downloads a
version once into `$STREAMGUARD_CACHE/bundles/` and verifies every file against its
manifest (again on each use, as for any bundle).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from streamguard.errors import ConfigError, StorageError
from streamguard.inference.bundle import BUNDLE, MANIFEST, BundleError, verify_bundle
from streamguard.storage import join, open_storage

INDEX = "index.json"
_VERSION = re.compile(r"^v(\d{4,})$")


def _versions(storage) -> list[str]:
    names = [n for n in storage.list() if _VERSION.match(n) and storage.exists(f"{n}/{MANIFEST}")]
    return sorted(names, key=lambda n: int(n[1:]))


def _entry(storage, version: str) -> dict:
    manifest_raw = storage.read_bytes(f"{version}/{MANIFEST}")
    meta = json.loads(storage.read_bytes(f"{version}/{BUNDLE}"))
    run = meta.get("run") or {}
    return {"version": version, "sha256": hashlib.sha256(manifest_raw).hexdigest(), "track": meta.get("track"),
            "threshold": meta.get("threshold"), "metrics": meta.get("metrics"), "created": meta.get("created"),
            "data_manifest_hash": run.get("data_manifest_hash"), "run": run.get("name"), "run_uri": run.get("uri"),
            "checkpoint": run.get("checkpoint"), "preprocess_version": meta.get("preprocess_version")}


def write_index(storage, name: str) -> dict:
    versions = _versions(storage)
    index = {"name": name, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
             "latest": versions[-1] if versions else None, "versions": [_entry(storage, v) for v in versions]}
    storage.write_bytes(INDEX, json.dumps(index, indent=1, sort_keys=True).encode())
    return index


def publish(bundle_dir: str | Path, to: str) -> dict:
    """Upload a verified local bundle as the next version of the model at `to`; returns its index entry."""
    root = Path(bundle_dir)
    manifest = verify_bundle(root)
    name = to.rstrip("/").rpartition("/")[2]
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", name or ""):
        raise ConfigError(f"--to {to!r}: the last path part is the model name (letters, digits, . _ -)")
    storage = open_storage(to)
    existing = [n for n in storage.list() if _VERSION.match(n)]
    number = max((int(n[1:]) for n in existing), default=0) + 1
    version = f"v{number:04d}"
    for rel in manifest["files"]:  # the manifest last: a version without it does not exist
        storage.upload_file(root / rel, f"{version}/{rel}")
    storage.upload_file(root / MANIFEST, f"{version}/{MANIFEST}")
    index = write_index(storage, name)
    return next(e for e in index["versions"] if e["version"] == version) | {"uri": join(to, version)}


def _cache_root() -> Path:
    return Path(os.environ.get("STREAMGUARD_CACHE", Path.home() / ".cache" / "streamguard")) / "bundles"


def is_registry_ref(ref: str) -> bool:
    return "://" in ref or "@" in Path(ref).name


def resolve(ref: str) -> Path:
    """`s3://.../NAME@VERSION` or `@latest` (or a local `DIR/NAME@VERSION`) -> a verified local
    bundle directory; an `s3://` bundle directory without `@` is downloaded as is."""
    base, at, version = ref.rpartition("@") if "@" in ref.rpartition("/")[2] else (ref, "", "")
    if not at:
        storage = open_storage(ref)
        if not storage.exists(MANIFEST):
            raise BundleError(f"{ref}: no {MANIFEST}; pass a bundle directory or a model as NAME@VERSION / NAME@latest")
        return _download(storage, ref)
    storage = open_storage(base)
    try:
        index = json.loads(storage.read_bytes(INDEX))
    except StorageError:
        raise BundleError(f"{base}: no {INDEX}; not a model published with `streamguard export --to`") from None
    known = [v["version"] for v in index.get("versions", [])]
    chosen = index.get("latest") if version == "latest" else version
    if chosen not in known:
        raise BundleError(f"{ref}: no version {version!r}; published versions: {', '.join(known) or 'none'} "
                          "(or @latest)")
    return _download(storage.child(chosen), join(base, chosen))


def _download(storage, uri: str) -> Path:
    local = storage.local_path()
    if local is not None:
        verify_bundle(local)
        return local
    target = _cache_root() / hashlib.sha256(uri.encode()).hexdigest()[:24]
    try:
        verify_bundle(target)
        return target
    except BundleError:
        shutil.rmtree(target, ignore_errors=True)
    manifest = json.loads(storage.read_bytes(MANIFEST))
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in manifest.get("files", {}):
        storage.download_file(rel, tmp / rel)
    storage.download_file(MANIFEST, tmp / MANIFEST)
    verify_bundle(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    verify_bundle(target)
    return target
