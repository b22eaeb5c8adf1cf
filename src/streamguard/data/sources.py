"""Data source specs -> labelled records.

A spec names a source: `synthetic` (the embedded generator) or `devign:PATH` (CodeXGLUE /
Devign JSONL, plain or .gz). Every record is a dict with `idx`, `func`, `target` (1 =
vulnerable), `cwe`, `project` and `group` (the unit of splitting: twins and duplicate
texts share a group so they never straddle train and test).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from streamguard.errors import DataError

SOURCE_KINDS = ("synthetic", "devign")


@dataclass(frozen=True)
class Source:
    records: list[dict]
    sha256: str     # of the input bytes (files) or the generated records (synthetic)
    spec: str


def read_source(spec: str, *, synthetic_size: int = 2400, seed: int = 0, limit: int | None = None) -> Source:
    kind, _, arg = spec.partition(":")
    if kind == "synthetic":
        from streamguard.data.synthetic import GENERATOR_VERSION, generate_samples

        n = int(arg) if arg.isdigit() else synthetic_size
        records = generate_samples(n, seed=seed)[:limit]
        digest = hashlib.sha256(f"synthetic-v{GENERATOR_VERSION}".encode())
        for r in records:
            digest.update(f"{r['target']}\0{r['func']}\0".encode())
        return Source(records, digest.hexdigest(), spec)
    if kind == "devign":
        if not arg:
            raise DataError("data spec 'devign:' needs a path, e.g. devign:data/train.jsonl.gz")
        records, sha = _read_devign(Path(arg), limit)
        return Source(records, sha, spec)
    raise DataError(f"unknown data source kind {kind!r} in {spec!r}; known kinds: {', '.join(SOURCE_KINDS)} "
                    "(e.g. synthetic, devign:PATH)")


def _read_devign(path: Path, limit: int | None) -> tuple[list[dict], str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read data file {str(path)!r}: {exc.strerror}; check data.source / --data") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            text_bytes = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: corrupt gzip file ({exc})") from None
    else:
        text_bytes = raw
    # Invalid UTF-8 inside a function is replaced, not fatal: real scraped code has it.
    text = text_bytes.decode("utf-8", errors="replace")
    records: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "func" not in row or "target" not in row:
            raise DataError(f"{path}:{lineno}: expected a JSON object with 'func' and 'target' (Devign format)")
        func, target = row["func"], row["target"]
        if not isinstance(func, str) or target not in (0, 1, "0", "1", True, False):
            raise DataError(f"{path}:{lineno}: 'func' must be a string and 'target' 0 or 1, got {str(target)[:20]!r}")
        records.append({
            "idx": int(row.get("idx", len(records))),
            "func": func,
            "target": int(target),
            "cwe": str(row.get("cwe") or ""),
            "project": str(row.get("project") or ""),
            "group": "text-" + text_hash(func),
        })
        if limit and len(records) >= limit:
            break
    if not records:
        raise DataError(f"{path}: no records found; expected Devign JSONL (one object per line)")
    return records, hashlib.sha256(raw).hexdigest()


_WS = re.compile(r"\s+")


def text_hash(func: str) -> str:
    """Whitespace-insensitive hash, so re-indented duplicates land in one group."""
    return hashlib.sha1(_WS.sub(" ", func).strip().encode("utf-8", errors="replace")).hexdigest()[:16]
