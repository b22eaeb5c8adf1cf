"""Data source specs -> labelled records.

A spec names a source kind and, for most kinds, a path (local or `s3://bucket/key`):

    synthetic, synthetic:N      the embedded seeded generator
    devign:PATH                 CodeXGLUE / Devign JSONL (plain or .gz)
    juliet:PATH                 Juliet-style JSONL (plain or .gz) with cwe / lang / testcase / file
    bigvul:PATH                 Big-Vul-style CSV (plain or .gz)
    dir:PATH[?labels=F.csv]     a tree of C/C++ files, labels in PATH/labels.csv (or F.csv)
    hf:NAME[?split=..&func=..&target=..]   a Hugging Face dataset (hub id or local directory)

Every record is a dict with the keys in RECORD_KEYS: `idx` (unique within the source), `func`,
`target` (1 = vulnerable), `cwe` ('CWE-<n>', comma-joined when several, '' if unknown),
`project`, `group` (the unit of splitting: duplicate texts share a group so they never
straddle train and test), `lang` ('c' or 'cpp'), `commit_id`, `date` (ISO 'YYYY-MM-DD' or
''), `source` (the spec's kind) and `weight` (an optional per-sample confidence weight >= 0,
from a JSONL `weight` or `confidence` field or the hf `weight=` option; None if absent).

Whole-file problems (unreadable path, corrupt gzip, missing columns) always raise DataError.
Single malformed rows raise only with `strict=True`; otherwise they are skipped and counted
in `Source.skipped` (reason -> count) so one bad line does not kill a long job.
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import sys
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from streamguard.errors import DataError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("synthetic", "devign", "juliet", "bigvul", "dir", "hf")
RECORD_KEYS = ("idx", "func", "target", "cwe", "project", "group", "lang", "commit_id", "date", "source", "weight")
C_EXTENSIONS = {".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp"}
_OPTIONS = {
    "synthetic": set(), "devign": set(), "juliet": set(), "bigvul": set(),
    "dir": {"labels"},
    "hf": {"split", "config", "func", "target", "cwe", "project", "idx", "lang", "commit_id", "date", "weight"},
}
_EXAMPLES = "synthetic, devign:PATH, juliet:PATH, bigvul:PATH, dir:PATH, hf:NAME"


@dataclass(frozen=True)
class Source:
    records: list[dict]
    sha256: str     # of the input bytes (files) or the generated / loaded records (synthetic, hf)
    spec: str
    skipped: dict[str, int] = field(default_factory=dict)   # reason -> rows skipped (strict=False)


def read_source(spec: str, *, synthetic_size: int = 2400, seed: int = 0, limit: int | None = None,
                strict: bool = False) -> Source:
    """Read the records named by `spec`; `limit` keeps the first N records (the sha256 still covers
    the whole input file); `strict` makes any malformed row an error instead of a skip."""
    kind, _, arg = spec.partition(":")
    if kind not in SOURCE_KINDS:
        raise DataError(f"unknown data source kind {kind!r} in {spec!r}; known kinds: {', '.join(SOURCE_KINDS)} "
                        f"(e.g. {_EXAMPLES})")
    if kind == "synthetic":
        return _read_synthetic(spec, arg, synthetic_size=synthetic_size, seed=seed, limit=limit)
    path, opts = _split_options(arg)
    unknown = sorted(set(opts) - _OPTIONS[kind])
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[kind])) or "none"
        raise DataError(f"unknown option(s) {', '.join(unknown)} in data spec {spec!r}; options for {kind}: {allowed}")
    if not path:
        what = "a dataset name or directory, e.g. hf:org/name" if kind == "hf" else f"a path, e.g. {kind}:data/train"
        raise DataError(f"data spec {spec!r} needs {what}")
    col = _Collector(spec if kind == "hf" else path, strict=strict, limit=limit)
    if kind in ("devign", "juliet"):
        sha = _read_jsonl(path, kind, col)
        expected = "expected JSONL with one object per line holding 'func' and 'target'"
    elif kind == "bigvul":
        sha = _read_bigvul(path, col)
        expected = "expected a Big-Vul CSV with a header row"
    elif kind == "dir":
        sha = _read_dir(path, opts, col)
        expected = "expected C/C++ files listed in the labels CSV"
    else:
        sha = _read_hf(path, opts, col)
        expected = "the dataset has no rows"
    records = col.finish(expected)
    return Source(records, sha, spec, dict(col.skipped))


def _read_synthetic(spec: str, arg: str, *, synthetic_size: int, seed: int, limit: int | None) -> Source:
    from streamguard.data.synthetic import GENERATOR_VERSION, generate_samples

    if arg and not arg.isdigit():
        raise DataError(f"data spec {spec!r}: expected synthetic or synthetic:N with N a number of functions")
    n = int(arg) if arg else synthetic_size
    records = generate_samples(n, seed=seed)[:limit]
    digest = hashlib.sha256(f"synthetic-v{GENERATOR_VERSION}".encode())
    for r in records:
        digest.update(f"{r['target']}\0{r['func']}\0".encode())
    # The generator's own groups (fixed twins share one) are kept; the other keys are filled in.
    out = [{**r, "cwe": normalise_cwe(r.get("cwe")), "project": r.get("project") or "synthetic",
            "lang": "c", "commit_id": "", "date": "", "source": "synthetic", "weight": None} for r in records]
    return Source(out, digest.hexdigest(), spec)


def _split_options(arg: str) -> tuple[str, dict[str, str]]:
    """'PATH?a=1&b=2' -> ('PATH', {'a': '1', 'b': '2'}); a '?' not followed by key=value pairs is
    part of the path."""
    base, sep, query = arg.rpartition("?")
    if not sep or not query:
        return arg, {}
    pairs = query.split("&")
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=[^=]*", p) for p in pairs):
        return arg, {}
    return base, {k: unquote(v) for k, v in (p.split("=", 1) for p in pairs)}


# --------------------------------------------------------------------------------------------
# Field normalisation

_CWE_TOKEN = re.compile(r"(?:cwe[-_:]?)?0*(\d+)", re.IGNORECASE)
_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}
_LANGS = {"c": "c", "cpp": "cpp", "c++": "cpp", "cxx": "cpp", "cc": "cpp"}
_DATE_FORMATS = ("%Y/%m/%d", "%m/%d/%Y", "%b %d, %Y", "%B %d, %Y", "%d %b %Y", "%d %B %Y", "%Y%m%d")


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value) -> str:
    if _is_missing(value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def normalise_cwe(value) -> str:
    """'CWE-119', '119', 'CWE119', 119 -> 'CWE-119'; several (a list or a ',;| ' separated string)
    -> unique, sorted by number, comma-joined ('CWE-119,CWE-787'); unknown ('NVD-CWE-Other', '') -> ''."""
    if isinstance(value, str):
        return _normalise_cwe_str(value)
    return _normalise_cwe(value)


@functools.lru_cache(maxsize=4096)
def _normalise_cwe_str(value: str) -> str:
    return _normalise_cwe(value)


def _normalise_cwe(value) -> str:
    if _is_missing(value):
        return ""
    items = value if isinstance(value, (list, tuple, set)) else [value]
    numbers: set[int] = set()
    for item in items:
        if isinstance(item, (list, tuple, set)):
            numbers.update(int(c[4:]) for c in normalise_cwe(item).split(",") if c)
            continue
        for token in re.split(r"[,;|/\s]+", _text(item)):
            m = _CWE_TOKEN.fullmatch(token.strip("[]()'\"{}"))
            if m:
                numbers.add(int(m.group(1)))
    return ",".join(f"CWE-{n}" for n in sorted(numbers))


def normalise_date(value) -> str:
    """-> 'YYYY-MM-DD', or '' when missing or unparseable."""
    if _is_missing(value) or value == "":
        return ""
    if isinstance(value, _dt.datetime):
        return value.date().isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    s = str(value).strip()
    m = re.match(r"(\d{4})-(\d{1,2})-(\d{1,2})(?![\d])", s)
    try:
        if m:
            return _dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat()
    except ValueError:
        return ""
    for fmt in _DATE_FORMATS:
        try:
            return _dt.datetime.strptime(s, fmt).date().isoformat()
        except ValueError:
            continue
    return ""


def normalise_lang(value, filename: str | None = None) -> str:
    """The record's language field if it names C or C++, else the file extension, else 'c'."""
    lang = _LANGS.get(_text(value).lower())
    if lang:
        return lang
    if filename:
        return C_EXTENSIONS.get(PurePosixPath(str(filename).replace("\\", "/")).suffix.lower(), "c")
    return "c"


def parse_label(value) -> int | None:
    """0/1 in any of the usual spellings -> int; anything else -> None."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in (0, 1) else None
    if isinstance(value, float):
        return int(value) if value in (0.0, 1.0) else None
    if isinstance(value, str):
        s = value.strip().lower()
        return 1 if s in _TRUE else 0 if s in _FALSE else None
    return None


def _int_or_none(value) -> int | None:
    if isinstance(value, bool) or _is_missing(value):
        return None
    if isinstance(value, int):
        return value
    try:
        f = float(str(value).strip())
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def text_hash(func: str) -> str:
    """Whitespace-insensitive hash, so re-indented duplicates land in one group. (Runs of Unicode
    whitespace -> one space, ends stripped: the same as re.sub(r"\\s+", " ", func).strip().)"""
    return hashlib.sha1(" ".join(func.split()).encode("utf-8", errors="replace")).hexdigest()[:16]


def parse_weight(value) -> float | None:
    """A confidence weight: a finite number >= 0 -> float; missing -> None; else ValueError."""
    if _is_missing(value) or value == "":
        return None
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"weight must be a number >= 0, got {str(value)[:20]!r}") from None
    if not math.isfinite(w) or w < 0:
        raise ValueError(f"weight must be a finite number >= 0, got {w!r}")
    return w


def make_record(*, idx, func: str, target: int, source: str, cwe=None, project=None, lang=None,
                filename: str | None = None, commit_id=None, date=None, weight=None) -> dict:
    return {
        "idx": idx,
        "func": func,
        "target": target,
        "cwe": normalise_cwe(cwe),
        "project": _text(project),
        "group": "text-" + text_hash(func),
        "lang": normalise_lang(lang, filename),
        "commit_id": _text(commit_id),
        "date": normalise_date(date),
        "source": source,
        "weight": parse_weight(weight),
    }


class _Collector:
    """Records plus the rows skipped on the way, or the first bad row raised when strict."""

    def __init__(self, where: str, *, strict: bool, limit: int | None):
        self.where, self.strict, self.limit = where, strict, limit
        self.records: list[dict] = []
        self.skipped: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def bad(self, reason: str, message: str) -> None:
        if self.strict:
            raise DataError(message + " (strict mode; without it such rows are skipped and counted)")
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.first.setdefault(reason, message)

    def count(self, reason: str, n: int = 1) -> None:
        if n:
            self.skipped[reason] = self.skipped.get(reason, 0) + n

    def add(self, record: dict) -> None:
        self.records.append(record)

    @property
    def full(self) -> bool:
        return bool(self.limit) and len(self.records) >= self.limit

    def finish(self, expected: str) -> list[dict]:
        if not self.records:
            detail = ""
            if self.first:
                reason, msg = next(iter(self.first.items()))
                detail = f" (skipped: {self.skipped}; first problem: {msg})"
            raise DataError(f"{self.where}: no usable records found{detail}; {expected}")
        # idx must be unique within the source: rows without a usable or with a repeated idx get fresh ones
        seen: set[int] = set()
        todo = []
        for r in self.records:
            if r["idx"] is None or r["idx"] in seen:
                todo.append(r)
            else:
                seen.add(r["idx"])
        if todo:
            nxt = max(seen, default=-1) + 1
            for r in todo:
                r["idx"] = nxt
                nxt += 1
            log.warning("%s: %d records had a missing or repeated idx and were renumbered", self.where, len(todo))
        if self.skipped:
            log.warning("%s: skipped %s (first: %s)", self.where, self.skipped,
                        "; ".join(self.first.values()) or "-")
        return self.records


# --------------------------------------------------------------------------------------------
# Bytes from local paths and s3://bucket/key

def is_s3(path: str) -> bool:
    return str(path).startswith("s3://")


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise DataError(f"bad S3 path {uri!r}: expected s3://bucket/key")
    return bucket, key


def _s3_endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


@functools.lru_cache(maxsize=8)
def _s3_client_for(endpoint: str | None, region: str, _key_id: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name=region,
                        config=Config(connect_timeout=5, read_timeout=60,
                                      retries={"max_attempts": 3, "mode": "standard"}))


def _s3_client():
    try:
        import boto3  # noqa: F401
    except ImportError:
        raise DataError("s3:// data paths need boto3: pip install 'streamguard[s3]'") from None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return _s3_client_for(_s3_endpoint(), region, os.environ.get("AWS_ACCESS_KEY_ID"))


def _s3_call(uri: str, fn, **kwargs):
    """Call boto3; every failure becomes a one-line DataError naming the object and what to do."""
    from botocore.exceptions import (BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError,
                                     NoCredentialsError)

    endpoint = _s3_endpoint()
    where = f"endpoint {endpoint}" if endpoint else "the default AWS endpoint"
    try:
        return fn(**kwargs)
    except (EndpointConnectionError, ConnectTimeoutError):
        raise DataError(f"cannot reach S3 {where} to read {uri!r}: check AWS_ENDPOINT_URL and that the server "
                        "is running") from None
    except NoCredentialsError:
        raise DataError(f"no AWS credentials to read {uri!r}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or use an IAM role)") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"NoSuchKey", "404", "NotFound"}:
            raise DataError(f"cannot read data file {uri!r}: no such key at {where}; check data.source / --data "
                            "or upload the file") from None
        if code == "NoSuchBucket":
            bucket, _ = _s3_parts(uri)
            raise DataError(f"cannot read data file {uri!r}: bucket {bucket!r} does not exist at {where}") from None
        if code in {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}:
            raise DataError(f"S3 refused access to {uri!r} ({code}) at {where}: check the credentials and the "
                            "bucket policy") from None
        raise DataError(f"cannot read data file {uri!r}: S3 error {code or exc} at {where}") from None
    except BotoCoreError as exc:
        raise DataError(f"S3 request for {uri!r} at {where} failed: {_one_line(str(exc))}") from None


def _describe(exc: BaseException) -> str:
    """'Type: message', followed by the root cause when a library wraps it."""
    text = f"{type(exc).__name__}: {_one_line(str(exc), 200)}"
    cause = exc.__cause__ or exc.__context__
    depth = 0
    while cause is not None and (cause.__cause__ or cause.__context__) is not None and depth < 5:
        cause, depth = cause.__cause__ or cause.__context__, depth + 1
    if cause is not None:
        text += f"; caused by {type(cause).__name__}: {_one_line(str(cause), 200)}"
    return text


def _one_line(text: str, width: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[:width - 3] + "..."


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a local file or an s3://bucket/key object (endpoint from AWS_ENDPOINT_URL)."""
    path = str(path)
    if is_s3(path):
        bucket, key = _s3_parts(path)
        client = _s3_client()
        body = _s3_call(path, client.get_object, Bucket=bucket, Key=key)["Body"]
        return _s3_call(path, body.read)
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read data file {path!r}: {exc.strerror or exc}; check data.source / --data") from None


def _open_raw(path: str):
    if is_s3(path):
        bucket, key = _s3_parts(path)
        client = _s3_client()
        return _s3_call(path, client.get_object, Bucket=bucket, Key=key)["Body"]
    try:
        p = Path(path).expanduser()
        if p.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        return open(p, "rb")  # noqa: SIM115 - closed by _opened
    except OSError as exc:
        raise DataError(f"cannot read data file {path!r}: {exc.strerror or exc}; check data.source / --data") from None


class _HashingReader(io.RawIOBase):
    """Feeds every byte read from `raw` into `hasher`, so the sha256 covers the raw (compressed) input."""

    def __init__(self, raw, hasher):
        self._raw, self._hasher = raw, hasher

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._hasher.update(data)
        return n


class _Stream:
    def __init__(self, text, buffered, hasher):
        self.text, self._buffered, self._hasher = text, buffered, hasher

    def digest(self) -> str:
        """Read what is left (after a `limit`) so the hash is of the whole input, then return it."""
        while self._buffered.read(1 << 20):
            pass
        return self._hasher.hexdigest()


@contextmanager
def _opened(path: str, *, newline: str, encoding: str = "utf-8"):
    """A text stream over a local or S3 file, gunzipped when it starts with the gzip magic.
    Invalid UTF-8 is replaced, not fatal: real scraped code has it."""
    raw = _open_raw(path)
    hasher = hashlib.sha256()
    buffered = io.BufferedReader(_HashingReader(raw, hasher), buffer_size=1 << 20)
    stream_errors: tuple = (OSError, EOFError, zlib.error)
    if is_s3(path):
        from botocore.exceptions import BotoCoreError

        stream_errors += (BotoCoreError,)
    compressed = False
    try:
        compressed = buffered.peek(2)[:2] == b"\x1f\x8b"
        binary = gzip.GzipFile(fileobj=buffered, mode="rb") if compressed else buffered
        text = io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline=newline)
        yield _Stream(text, buffered, hasher)
    except stream_errors as exc:
        if compressed and isinstance(exc, (OSError, EOFError, zlib.error)):
            raise DataError(f"{path}: corrupt gzip file ({_one_line(str(exc)) or type(exc).__name__}); "
                            "re-download or re-compress it") from None
        raise DataError(f"cannot read data file {path!r}: {_one_line(str(exc)) or type(exc).__name__}") from None
    finally:
        raw.close()


# --------------------------------------------------------------------------------------------
# devign / juliet: JSONL

_JSON = json.JSONDecoder(strict=False)   # strict=False: raw tabs and other control characters in strings are fine


def _read_jsonl(path: str, kind: str, col: _Collector) -> str:
    with _opened(path, newline="\n") as stream:
        for lineno, line in enumerate(stream.text, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = _JSON.decode(line)
            except ValueError as exc:
                col.bad("bad_json", f"{where}: not valid JSON ({getattr(exc, 'msg', exc)}); fix or remove the line")
                continue
            if not isinstance(row, dict):
                col.bad("bad_json", f"{where}: expected a JSON object, got {type(row).__name__}")
                continue
            func = row.get("func")
            if not isinstance(func, str):
                col.bad("missing_func", f"{where}: no 'func' string in the object (keys: {', '.join(list(row)[:12])})")
                continue
            if "target" not in row:
                col.bad("missing_label", f"{where}: no 'target' in the object (keys: {', '.join(list(row)[:12])})")
                continue
            target = parse_label(row["target"])
            if target is None:
                col.bad("bad_label", f"{where}: 'target' must be 0 or 1, got {str(row['target'])[:20]!r}")
                continue
            date = next((row[k] for k in ("date", "commit_date", "publish_date") if row.get(k)), None)
            try:
                weight = parse_weight(row.get("weight", row.get("confidence")))
            except ValueError as exc:
                col.bad("bad_weight", f"{where}: {exc}")
                continue
            col.add(make_record(weight=weight,
                idx=_int_or_none(row.get("idx")), func=func, target=target, source=kind, cwe=row.get("cwe"),
                project="juliet" if kind == "juliet" else row.get("project"), lang=row.get("lang"),
                filename=row.get("file") or row.get("file_name"), commit_id=row.get("commit_id"), date=date))
            if col.full:
                break
        return stream.digest()


# --------------------------------------------------------------------------------------------
# bigvul: CSV

_BIGVUL_FUNC = ("func_before", "processed_func")
_BIGVUL_LABEL = ("vul", "target")
_BIGVUL_DATE = ("publish_date", "commit_date", "Publish Date", "date")
_BIGVUL_CWE = ("CWE ID", "cwe", "cwe_id", "CWE")
_BIGVUL_IDX = ("idx", "index", "", "Unnamed: 0")
_BIGVUL_FILE = ("file_name", "file", "path")


def _raise_csv_limit() -> None:
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _first(header: list[str], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in header), None)


def _csv_rows(reader, col: _Collector, path: str, width: int):
    """(row number, line, values) per data row; malformed CSV rows are reported via `col`."""
    rowno = 0
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            rowno += 1
            col.bad("bad_csv", f"{path}: row {rowno} (line {reader.line_num}): malformed CSV ({exc})")
            continue
        if not values or (len(values) == 1 and not values[0].strip()):
            continue   # blank line
        rowno += 1
        if len(values) != width:
            col.bad("bad_csv", f"{path}: row {rowno} (line {reader.line_num}): expected {width} fields as in the "
                               f"header, got {len(values)}; check the quoting")
            continue
        yield rowno, reader.line_num, values


def _csv_header(reader, path: str, expected: str) -> list[str]:
    try:
        return [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty CSV file; expected {expected}") from None
    except csv.Error as exc:
        raise DataError(f"{path}: line 1: malformed CSV header ({exc})") from None


def _read_bigvul(path: str, col: _Collector) -> str:
    _raise_csv_limit()
    with _opened(path, newline="", encoding="utf-8-sig") as stream:
        reader = csv.reader(stream.text)
        header = _csv_header(reader, path, "a Big-Vul CSV with a header row")
        func_col, label_col = _first(header, _BIGVUL_FUNC), _first(header, _BIGVUL_LABEL)
        if func_col is None or label_col is None:
            need = [" or ".join(names) for names, got in ((_BIGVUL_FUNC, func_col), (_BIGVUL_LABEL, label_col))
                    if got is None]
            raise DataError(f"{path}: missing required column(s) {'; '.join(need)}; columns found: "
                            f"{', '.join(repr(h) for h in header[:40])}")
        pos = {h: i for i, h in reversed(list(enumerate(header)))}   # first occurrence wins
        idx_col, cwe_col, file_col = _first(header, _BIGVUL_IDX), _first(header, _BIGVUL_CWE), _first(header, _BIGVUL_FILE)
        date_cols = [c for c in _BIGVUL_DATE if c in pos]

        def get(values, name):
            return values[pos[name]] if name is not None and name in pos else None

        for rowno, line, values in _csv_rows(reader, col, path, len(header)):
            where = f"{path}: row {rowno} (line {line})"
            target = parse_label(get(values, label_col))
            if target is None:
                col.bad("bad_label", f"{where}: {label_col!r} must be 0 or 1, got {str(get(values, label_col))[:20]!r}")
                continue
            idx = _int_or_none(get(values, idx_col))
            col.add(make_record(
                idx=rowno - 1 if idx is None else idx, func=get(values, func_col), target=target, source="bigvul",
                cwe=get(values, cwe_col), project=get(values, "project"), lang=get(values, "lang"),
                filename=get(values, file_col), commit_id=get(values, "commit_id"),
                date=next((get(values, c) for c in date_cols if (get(values, c) or "").strip()), None)))
            if col.full:
                break
        return stream.digest()


# --------------------------------------------------------------------------------------------
# dir: a tree of C/C++ files plus a labels CSV

def _join(root: str, rel: str) -> str:
    return f"{root.rstrip('/')}/{rel}" if is_s3(root) else str(Path(root).expanduser() / rel)


def _list_code_files(root: str) -> list[str]:
    """Relative POSIX paths of the C/C++ files under root."""
    if is_s3(root):
        bucket, prefix = _s3_parts(root)
        prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        client = _s3_client()
        pages = _s3_call(root, lambda: list(client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)))
        keys = [o["Key"][len(prefix):] for page in pages for o in page.get("Contents", [])]
    else:
        base = Path(root).expanduser()
        keys = [p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()]
    return sorted(k for k in keys if PurePosixPath(k).suffix.lower() in C_EXTENSIONS)


def _labels_path(root: str, opts: dict[str, str]) -> str:
    name = opts.get("labels", "labels.csv")
    if is_s3(name) or Path(name).expanduser().is_absolute():
        return name
    inside = _join(root, name)
    if "labels" in opts and not is_s3(root) and not Path(inside).exists() and Path(name).exists():
        return name   # relative to the working directory
    return inside


def _clean_rel(rel: str) -> str | None:
    rel = rel.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts:
        return None
    return p.as_posix()


def _read_dir(root: str, opts: dict[str, str], col: _Collector) -> str:
    if not is_s3(root) and not Path(root).expanduser().is_dir():
        raise DataError(f"cannot read data directory {root!r}: not a directory; dir:PATH expects a folder of "
                        "C/C++ files with PATH/labels.csv")
    labels_path = _labels_path(root, opts)
    try:
        labels_raw = read_bytes(labels_path)
    except DataError as exc:
        raise DataError(f"{exc}; dir:PATH expects PATH/labels.csv (columns path,target[,cwe,project]) or "
                        "dir:PATH?labels=FILE.csv") from None
    _raise_csv_limit()
    reader = csv.reader(io.StringIO(labels_raw.decode("utf-8-sig", errors="replace"), newline=""))
    header = _csv_header(reader, labels_path, "a labels CSV with columns path,target[,cwe,project]")
    missing = [c for c in ("path", "target") if c not in header]
    if missing:
        raise DataError(f"{labels_path}: missing required column(s) {', '.join(missing)}; columns found: "
                        f"{', '.join(repr(h) for h in header[:40])}")
    pos = {h: i for i, h in reversed(list(enumerate(header)))}

    def get(values, name):
        return values[pos[name]] if name in pos else None

    file_digests: dict[str, bytes] = {}
    listed: set[str] = set()
    for rowno, line, values in _csv_rows(reader, col, labels_path, len(header)):
        where = f"{labels_path}: row {rowno} (line {line})"
        rel = _clean_rel(get(values, "path") or "")
        if col.full:                 # past the limit: only note which files are listed
            if rel is not None:
                listed.add(rel)
            continue
        if rel is None:
            col.bad("bad_path", f"{where}: 'path' must be a relative path inside {root}, got {get(values, 'path')!r}")
            continue
        if rel in listed:
            col.bad("duplicate_path", f"{where}: {rel!r} is listed twice; the first row is used")
            continue
        listed.add(rel)
        target = parse_label(get(values, "target"))
        if target is None:
            col.bad("bad_label", f"{where}: 'target' must be 0 or 1, got {str(get(values, 'target'))[:20]!r}")
            continue
        try:
            data = read_bytes(_join(root, rel))
        except DataError:
            col.bad("missing_file", f"{where}: {rel!r} is listed but cannot be read under {root}")
            continue
        file_digests[rel] = hashlib.sha256(data).digest()
        idx = _int_or_none(get(values, "idx"))
        col.add(make_record(
            idx=rowno - 1 if idx is None else idx, func=data.decode("utf-8", errors="replace"), target=target,
            source="dir", cwe=get(values, "cwe"), project=get(values, "project"), lang=get(values, "lang"),
            filename=rel, commit_id=get(values, "commit_id"), date=get(values, "date")))
    unlisted = [rel for rel in _list_code_files(root) if rel not in listed]
    col.count("unlabelled_file", len(unlisted))
    digest = hashlib.sha256(labels_raw)
    for rel in sorted(file_digests):
        digest.update(rel.encode("utf-8", errors="surrogateescape") + b"\0" + file_digests[rel])
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# hf: Hugging Face datasets

_ENV_TRUE = {"1", "ON", "YES", "TRUE"}


def _hf_offline_requested() -> bool:
    return any(os.environ.get(v, "").upper() in _ENV_TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


@contextmanager
def _hf_offline_mode():
    """The libraries read HF_HUB_OFFLINE / HF_DATASETS_OFFLINE once, at import; honour the
    environment as it is now, so an offline request never waits on network retries."""
    if not _hf_offline_requested():
        yield
        return
    import datasets.config as dconfig
    import huggingface_hub.constants as hconst

    saved = (dconfig.HF_HUB_OFFLINE, dconfig.HF_DATASETS_OFFLINE, hconst.HF_HUB_OFFLINE)
    dconfig.HF_HUB_OFFLINE = dconfig.HF_DATASETS_OFFLINE = hconst.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dconfig.HF_HUB_OFFLINE, dconfig.HF_DATASETS_OFFLINE, hconst.HF_HUB_OFFLINE = saved


def _hf_load(name: str, split: str, config: str | None, explicit_split: bool):
    try:
        import datasets
    except ImportError:
        raise DataError("hf: data sources need the 'datasets' package: pip install 'datasets>=2.19,<6'") from None
    local = Path(name).expanduser()
    spec = f"hf:{name}"
    with _hf_offline_mode():
        if local.is_dir() and ((local / "state.json").is_file() or (local / "dataset_dict.json").is_file()):
            try:
                ds = datasets.load_from_disk(str(local))
            except Exception as exc:  # noqa: BLE001 - any library failure becomes one line
                raise DataError(f"{spec}: cannot load the saved dataset ({_describe(exc)})") from None
            if isinstance(ds, datasets.DatasetDict):
                if split not in ds:
                    raise DataError(f"{spec}: no split {split!r}; splits found: {', '.join(ds)}; "
                                    f"choose one with hf:{name}?split=NAME")
                ds = ds[split]
            elif explicit_split and ds.split is not None and str(ds.split) != split:
                log.warning("%s holds the single split %r; ignoring split=%r", spec, str(ds.split), split)
            return ds
        try:
            return datasets.load_dataset(name, config, split=split)
        except Exception as exc:  # noqa: BLE001
            msg = _one_line(str(exc))
            if local.exists():
                raise DataError(f"{spec}: cannot load the local dataset ({_describe(exc)})") from None
            not_found = getattr(getattr(datasets, "exceptions", None), "DatasetNotFoundError", ())
            offline = _hf_offline_requested() or bool(getattr(datasets.config, "HF_HUB_OFFLINE", False))
            if offline or isinstance(exc, ConnectionError) or "offline" in msg.lower():
                raise DataError(
                    f"{spec}: dataset {name!r} is not available offline (not in the local Hugging Face cache and "
                    f"the Hub cannot be reached{' in offline mode' if offline else ''}); on a machine with network "
                    f"run python -c \"import datasets; datasets.load_dataset({name!r}).save_to_disk('DIR')\", "
                    f"copy DIR here and use hf:DIR") from None
            if not_found and isinstance(exc, not_found):
                raise DataError(f"{spec}: dataset {name!r} was not found on the Hugging Face Hub (check the name, "
                                "or log in for a gated or private dataset) and is not a local directory") from None
            if isinstance(exc, ValueError) and "split" in msg.lower():
                raise DataError(f"{spec}: {msg}; choose one with hf:{name}?split=NAME") from None
            raise DataError(f"{spec}: cannot load dataset ({_describe(exc)})") from None


def _read_hf(name: str, opts: dict[str, str], col: _Collector) -> str:
    split = opts.get("split", "train")
    ds = _hf_load(name, split, opts.get("config"), "split" in opts)
    spec = f"hf:{name}"
    columns = list(ds.column_names)
    names = {k: opts.get(k, k) for k in ("func", "target", "cwe", "project", "idx", "lang", "commit_id", "date", "weight")}
    for key in ("func", "target"):
        if names[key] not in columns:
            raise DataError(f"{spec} [{split}]: no column {names[key]!r} for {key}; columns found: "
                            f"{', '.join(repr(c) for c in columns[:40])}; name it with hf:{name}?{key}=COLUMN")
    for key in ("cwe", "project", "idx", "lang", "commit_id", "date", "weight"):
        if key in opts and names[key] not in columns:
            raise DataError(f"{spec} [{split}]: no column {names[key]!r} for {key}; columns found: "
                            f"{', '.join(repr(c) for c in columns[:40])}")
    if "date" not in opts and "date" not in columns:
        names["date"] = next((c for c in ("commit_date", "publish_date") if c in columns), "date")
    wanted = sorted({n for n in names.values() if n in columns})
    table = ds.select_columns(wanted)
    digest = hashlib.sha256(b"hf-records-v1\0")
    rowno = 0
    for batch in table.iter(batch_size=1000):
        n = len(batch[names["func"]])
        for i in range(n):
            where = f"{spec} [{split}] row {rowno}"
            rowno += 1

            def get(key):
                c = names[key]
                return batch[c][i] if c in batch else None

            func = get("func")
            if isinstance(func, bytes):
                func = func.decode("utf-8", errors="replace")
            if not isinstance(func, str):
                col.bad("missing_func", f"{where}: column {names['func']!r} is not a string ({type(func).__name__})")
                continue
            target = parse_label(get("target"))
            if target is None:
                col.bad("bad_label", f"{where}: column {names['target']!r} must be 0 or 1, got {str(get('target'))[:20]!r}")
                continue
            idx = _int_or_none(get("idx"))
            try:
                weight = parse_weight(get("weight") if "weight" in opts else None)
            except ValueError as exc:
                col.bad("bad_weight", f"{where}: {exc}")
                continue
            rec = make_record(idx=rowno - 1 if idx is None else idx, func=func, target=target, source="hf",
                              cwe=get("cwe"), project=get("project"), lang=get("lang"), commit_id=get("commit_id"),
                              date=get("date"), weight=weight)
            col.add(rec)
            digest.update(f"{rec['idx']}\0{target}\0{rec['cwe']}\0{rec['project']}\0".encode())
            digest.update(func.encode("utf-8", errors="surrogatepass") + b"\0")
            if col.full:
                return digest.hexdigest()
    return digest.hexdigest()
