"""`streamguard data prepare`: sources -> dedup -> splits and folds -> per-function
processing (a local process pool, or Ray Data) -> Parquet shards + manifest.

Preparing is cached: the manifest records a key over the preprocessing version, the
settings and the sources' sha256, and a re-run with the same key does nothing unless
forced. Training calls `ensure_prepared`, so it never parses code itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from streamguard.data.process import PREPROCESS_VERSION, ProcessSettings, process_chunk
from streamguard.data.shards import (MANIFEST, PROCESS_SCHEMA, SPLITS, graph_stats, read_manifest,
                                     recommended_batch_size, write_shards)
from streamguard.data.sources import read_source
from streamguard.errors import DataError
from streamguard.storage import Storage, open_storage

log = logging.getLogger(__name__)
CHUNK = 64  # functions per task: big enough to amortise IPC, small enough to balance two workers


@dataclass(frozen=True)
class PrepareSettings:
    source: str
    valid_source: str | None = None
    test_source: str | None = None
    synthetic_size: int = 2400
    limit: int | None = None
    seed: int = 0
    dedup: bool = True
    drop_conflicting: bool = True
    split: str = "random"
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    folds: int = 5
    rows_per_shard: int = 4096
    process: ProcessSettings = field(default_factory=ProcessSettings)

    @classmethod
    def from_data_config(cls, d, seed: int) -> "PrepareSettings":
        """The builder: DataConfig section -> plain settings. The split and folds use
        `data.split_seed` when set, else the run's seed."""
        seed = d.split_seed if d.split_seed is not None else seed
        return cls(source=d.source, valid_source=d.valid_source, test_source=d.test_source,
                   synthetic_size=d.synthetic_size, limit=d.limit, seed=seed, dedup=d.dedup,
                   drop_conflicting=d.drop_conflicting, split=d.split, valid_fraction=d.valid_fraction,
                   test_fraction=d.test_fraction, folds=d.folds, rows_per_shard=d.rows_per_shard,
                   process=ProcessSettings(max_source_bytes=d.max_source_bytes, oversize=d.oversize,
                                           max_nodes=d.max_nodes, token_buckets=d.token_buckets,
                                           tokenizer=d.tokenizer, max_tokens=d.max_tokens))


def cache_key(settings: PrepareSettings, source_sha: dict[str, str], tokenizer_sha: str | None = None) -> str:
    """Over the version, the settings, the sources' sha256 and the tokenizer's content: a
    tokenizer directory retrained in place, or another tokenizer under the same name,
    changes the key even though `data.tokenizer` reads the same."""
    blob = json.dumps({"version": PREPROCESS_VERSION, "settings": asdict(settings), "sources": source_sha,
                       **({"tokenizer_sha256": tokenizer_sha} if tokenizer_sha else {})},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def tokenizer_info(name: str | None) -> dict | None:
    """What the manifest records about the tokenizer (and what a transformer backbone is
    checked against): name, vocabulary size, special ids and the sha256 of its content."""
    if not name:
        return None
    from streamguard.data.tokens import load_tokenizer, tokenizer_fingerprint

    tok = load_tokenizer(name)  # fail fast, before any work is spread out
    return {"name": name, "vocab_size": tok.vocab_size, "sha256": tokenizer_fingerprint(tok),
            "cls_id": tok.cls_id, "sep_id": tok.sep_id, "pad_id": tok.pad_id}


def _records(settings: PrepareSettings) -> tuple[dict[str, list[dict]], dict, Counter, dict]:
    """Read every source, dedup, assign splits and folds. Returns records per split."""
    from streamguard.data.splits import assign_folds, assign_splits, dedup

    read = dict(synthetic_size=settings.synthetic_size, limit=settings.limit)
    main = read_source(settings.source, seed=settings.seed, **read)
    sources = {settings.source: {"sha256": main.sha256, "records": len(main.records), "skipped": main.skipped}}
    skipped = Counter({f"source:{k}": v for k, v in main.skipped.items()})
    dedup_counts: dict[str, int] = {}
    records = main.records
    if settings.dedup:
        records, dedup_counts = dedup(records, drop_conflicting=settings.drop_conflicting)
    fixed = {"valid": settings.valid_source, "test": settings.test_source}
    split = assign_splits(records, strategy=settings.split,
                          valid_fraction=0.0 if fixed["valid"] else settings.valid_fraction,
                          test_fraction=0.0 if fixed["test"] else settings.test_fraction, seed=settings.seed)
    for name, spec in fixed.items():
        if spec:
            extra = read_source(spec, seed=settings.seed + 1, **read)
            sources[spec] = {"sha256": extra.sha256, "records": len(extra.records), "skipped": extra.skipped}
            skipped.update({f"source:{k}": v for k, v in extra.skipped.items()})
            split[name] = extra.records
    # Folds over the training pool only (for out-of-fold stacking); -1 elsewhere.
    folds = assign_folds(split["train"], k=settings.folds, seed=settings.seed) if split["train"] else []
    for name in SPLITS:
        for i, r in enumerate(split[name]):
            r.setdefault("lang", "c")
            r["split"], r["fold"] = name, (folds[i] if name == "train" else -1)
    return split, sources, skipped, dedup_counts


def _run_pool(chunks: list[list[dict]], s: ProcessSettings, workers: int, progress: bool, inline_single: bool = True):
    """Ordered results from a process pool (inline for one worker unless told otherwise)."""
    bar = _bar(sum(len(c) for c in chunks), progress)
    if workers <= 1 and inline_single:
        for chunk in chunks:
            yield process_chunk(chunk, s)
            bar.update(len(chunk))
    else:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for chunk, result in zip(chunks, pool.map(process_chunk, chunks, [s] * len(chunks))):
                yield result
                bar.update(len(chunk))
    bar.close()


def _bar(total: int, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="prepare", unit="fn", disable=not (progress and sys.stderr.isatty()))


def prepare(settings: PrepareSettings, out: str, *, workers: int = 0, force: bool = False, use_ray: bool = False,
            progress: bool = True, storage_options: dict | None = None, memory_budget_mb: float = 2048) -> dict:
    """Prepare `settings` into `out` (local dir or s3://). Returns the manifest."""
    started = time.time()
    storage = open_storage(out, **(storage_options or {}))
    split, sources, skipped, dedup_counts = _records(settings)
    tok_info = tokenizer_info(settings.process.tokenizer)
    key = cache_key(settings, {spec: meta["sha256"] for spec, meta in sources.items()},
                    tok_info["sha256"] if tok_info else None)
    if not force and storage.exists(MANIFEST):
        try:
            existing = read_manifest(storage)
        except DataError:
            existing = {}
        if existing.get("cache_key") == key:
            log.info("%s is up to date (same sources, settings and version); use --force to rebuild", out)
            return existing
    ordered = [r for name in SPLITS for r in split[name]]
    chunks = [ordered[i:i + CHUNK] for i in range(0, len(ordered), CHUNK)]
    workers = workers or os.cpu_count() or 1
    if use_ray:
        from streamguard.distributed.preprocess import run_ray_data

        results = [run_ray_data(ordered, settings.process, batch_size=CHUNK)]
    else:
        results = _run_pool(chunks, settings.process, workers, progress)
    processed = pa.concat_tables(list(results)) if chunks else PROCESS_SCHEMA.empty_table()
    reasons = processed["skip_reason"]
    skipped.update(r for r in reasons.to_pylist() if r is not None)
    table = processed.filter(pc.is_null(reasons)).drop_columns(["skip_reason"])
    manifest = _manifest(settings, table, sources, skipped, dedup_counts, key, tok_info, memory_budget_mb)
    # Replace atomically from a reader's point of view: drop the old manifest first, write
    # shards, then the manifest last (a dataset without a manifest does not exist).
    if storage.exists(MANIFEST):
        storage.delete(MANIFEST)
    for name in SPLITS:
        storage.delete(name)
    split_col = table["split"].to_numpy(zero_copy_only=False)
    for name in SPLITS:
        part = table.filter(pa.array(split_col == name))
        manifest["shards"][name] = write_shards(storage, name, part, rows_per_shard=settings.rows_per_shard) \
            if part.num_rows else []
    manifest["seconds"] = round(time.time() - started, 2)
    storage.write_bytes(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
    log.info("prepared %d functions into %s in %.1fs", table.num_rows, storage.uri, manifest["seconds"])
    return manifest


def _manifest(settings, table: pa.Table, sources, skipped: Counter, dedup_counts, key, tokenizer_info,
              memory_budget_mb) -> dict:
    from streamguard.data.parse import EDGE_KINDS, node_type_vocab_size

    cols = {c: table[c].to_numpy(zero_copy_only=False) for c in ("split", "target", "tier", "num_nodes", "num_edges",
                                                                  "window_reason", "truncated_nodes", "truncated_source")}
    per_split = {}
    for name in SPLITS:
        m = cols["split"] == name
        per_split[name] = {"n": int(m.sum()), "positive": int((cols["target"][m] == 1).sum()),
                           "negative": int((cols["target"][m] == 0).sum())}
    tiers = Counter(cols["tier"].tolist())
    n_input = sum(meta["records"] + sum(meta["skipped"].values()) for meta in sources.values())
    stats = graph_stats(cols["num_nodes"], cols["num_edges"])
    hidden, layers = 128, 4
    reasons = Counter(r.split(":")[0] for r in cols["window_reason"].tolist())
    return {
        "format": 1, "preprocess_version": PREPROCESS_VERSION, "cache_key": key,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": asdict(settings), "sources": sources,
        "counts": {"input": n_input, "kept": int(table.num_rows), "per_split": per_split,
                   "dedup": dedup_counts, "skipped": dict(sorted(skipped.items())),
                   "truncated_nodes": int(cols["truncated_nodes"].sum()),
                   "truncated_source": int(cols["truncated_source"].sum())},
        "tiers": dict(tiers), "tier_rates": {t: round(n / max(1, table.num_rows), 4) for t, n in tiers.items()},
        "graph_stats": stats, "edge_kinds": list(EDGE_KINDS),
        "num_node_types": node_type_vocab_size(), "token_buckets": settings.process.token_buckets,
        "tokenizer": tokenizer_info, "token_windows": dict(reasons), "folds": settings.folds,
        "batch_size": {"memory_budget_mb": memory_budget_mb, "hidden": hidden, "layers": layers,
                       "recommended": recommended_batch_size(stats["nodes"]["p95"], stats["edges"]["p95"],
                                                             hidden=hidden, layers=layers,
                                                             memory_budget_mb=memory_budget_mb)},
        "shards": {},
    }


def default_cache_dir() -> Path:
    return Path(os.environ.get("STREAMGUARD_CACHE", Path.home() / ".cache" / "streamguard")) / "prepared"


def ensure_prepared(settings: PrepareSettings, prepared_dir: str | None, *, workers: int = 0,
                    storage_options: dict | None = None) -> tuple[Storage, dict]:
    """The training entry: a prepared dataset for these settings, built once and cached.

    A `prepared:DIR` source is used as is. Otherwise the data is prepared into
    `prepared_dir` (default: a content-keyed folder under ~/.cache/streamguard/prepared),
    under a file lock so concurrent ranks or runs prepare it only once.
    """
    if settings.source.startswith("prepared:"):
        storage = open_storage(settings.source.removeprefix("prepared:"), **(storage_options or {}))
        return storage, read_manifest(storage)
    target = prepared_dir or str(default_cache_dir() / _settings_digest(settings))
    if target.startswith("s3://"):
        return open_storage(target, **(storage_options or {})), prepare(
            settings, target, workers=workers, storage_options=storage_options)
    Path(target).mkdir(parents=True, exist_ok=True)
    with open(Path(target) / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other ranks wait here, then find the cache warm
        manifest = prepare(settings, target, workers=workers)
    return open_storage(target), manifest


def _settings_digest(settings: PrepareSettings) -> str:
    blob = json.dumps(asdict(settings), sort_keys=True, default=str)
    return hashlib.sha256(f"{PREPROCESS_VERSION}:{blob}".encode()).hexdigest()[:20]

