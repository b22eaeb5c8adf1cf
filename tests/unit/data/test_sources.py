"""Tests for data sources: every kind from small files in tmp_path, S3 through moto, and the errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from pathlib import Path

import pytest

from streamguard.data.sources import (RECORD_KEYS, Source, normalise_cwe, normalise_date, normalise_lang, parse_label,
                                      read_bytes, read_source, text_hash)
from streamguard.errors import DataError

JULIET_VALID = Path("/work/shared/data/juliet/valid.jsonl.gz")

DEVIGN_ROWS = [
    {"project": "FFmpeg", "commit_id": "973b1a6b", "target": 0, "func": "int f(int a) {\n\treturn a + 1;\n}", "idx": 7},
    {"project": "qemu", "commit_id": "ab12cd34", "target": 1, "func": "void g(char *s) { char b[8]; strcpy(b, s); }",
     "idx": 8, "cwe": "119"},
    {"project": "qemu", "commit_id": "ffff0000", "target": True, "func": "int h() { return '\u0000'; }", "idx": 9},
]


def write_jsonl(path: Path, rows, *, gz: bool = False, extra_lines: list[str] = ()) -> bytes:
    text = "\n".join([json.dumps(r) for r in rows] + list(extra_lines)) + "\n"
    raw = gzip.compress(text.encode()) if gz else text.encode()
    path.write_bytes(raw)
    return raw


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    return msg


def check_schema(src: Source, kind: str) -> None:
    assert src.records
    idxs = [r["idx"] for r in src.records]
    assert len(set(idxs)) == len(idxs)
    for r in src.records:
        assert set(r) == set(RECORD_KEYS)
        assert isinstance(r["idx"], int) and isinstance(r["func"], str) and r["target"] in (0, 1)
        assert r["lang"] in ("c", "cpp") and r["source"] == kind
        assert r["group"] == "text-" + text_hash(r["func"])
        for key in ("cwe", "project", "commit_id", "date"):
            assert isinstance(r[key], str)
    assert len(src.sha256) == 64


# ---------------------------------------------------------------- normalisation helpers

@pytest.mark.parametrize("value,expected", [
    ("CWE-119", "CWE-119"), ("119", "CWE-119"), ("CWE119", "CWE-119"), ("cwe_119", "CWE-119"), (119, "CWE-119"),
    (119.0, "CWE-119"), ("CWE-787, CWE-119", "CWE-119,CWE-787"), (["CWE-787", "119", "CWE-119"], "CWE-119,CWE-787"),
    ("['CWE-20', 'CWE-787']", "CWE-20,CWE-787"), ("NVD-CWE-Other", ""), ("NVD-CWE-noinfo", ""), ("", ""),
    (None, ""), (float("nan"), ""), ("CWE-020", "CWE-20"),
])
def test_normalise_cwe(value, expected):
    assert normalise_cwe(value) == expected


def test_normalise_date_lang_label():
    assert normalise_date("2017-03-23") == "2017-03-23"
    assert normalise_date("2016-12-14 22:47:07+00:00") == "2016-12-14"
    assert normalise_date("2016-12-14T22:47:07Z") == "2016-12-14"
    assert normalise_date("03/23/2017") == "2017-03-23"
    assert normalise_date("") == normalise_date(None) == normalise_date("not a date") == normalise_date("2017-13-45") == ""
    assert normalise_lang("C++") == "cpp" and normalise_lang("C") == "c" and normalise_lang("cpp") == "cpp"
    assert normalise_lang(None, "a/b/x.cc") == "cpp" and normalise_lang("", "x.HPP") == "cpp"
    assert normalise_lang(None, "x.h") == "c" and normalise_lang(None, "x.txt") == "c" and normalise_lang(None) == "c"
    assert [parse_label(v) for v in (0, 1, "0", "1", " 1 ", True, False, 1.0, "1.0", "true")] == [0, 1, 0, 1, 1, 1, 0, 1, 1, 1]
    assert [parse_label(v) for v in (2, -1, "yes please", None, "", 0.5, [1])] == [None] * 7


# ---------------------------------------------------------------- devign / juliet JSONL

def test_devign_jsonl(tmp_path):
    path = tmp_path / "train.jsonl"
    raw = write_jsonl(path, DEVIGN_ROWS)
    src = read_source(f"devign:{path}")
    check_schema(src, "devign")
    assert src.sha256 == hashlib.sha256(raw).hexdigest() and src.skipped == {}
    assert [r["idx"] for r in src.records] == [7, 8, 9]
    assert [r["target"] for r in src.records] == [0, 1, 1]
    a, b, c = src.records
    assert (a["project"], a["commit_id"], a["cwe"], a["lang"], a["date"]) == ("FFmpeg", "973b1a6b", "", "c", "")
    assert b["cwe"] == "CWE-119"
    assert "\x00" in c["func"]                     # NUL kept as-is
    assert a["func"] == DEVIGN_ROWS[0]["func"]


def test_devign_gz_equals_plain_and_limit(tmp_path):
    plain, gz = tmp_path / "d.jsonl", tmp_path / "d.jsonl.gz"
    write_jsonl(plain, DEVIGN_ROWS)
    raw = write_jsonl(gz, DEVIGN_ROWS, gz=True)
    a, b = read_source(f"devign:{plain}"), read_source(f"devign:{gz}")
    assert a.records == b.records
    assert b.sha256 == hashlib.sha256(raw).hexdigest()
    limited = read_source(f"devign:{gz}", limit=2)
    assert len(limited.records) == 2 and limited.sha256 == b.sha256   # the hash still covers the whole file


def test_invalid_utf8_is_replaced_not_fatal(tmp_path):
    path = tmp_path / "bad_utf8.jsonl"
    path.write_bytes(b'{"func": "int f() { return \xff\xfe; }", "target": 1, "idx": 0}\n')
    (r,) = read_source(f"devign:{path}").records
    assert "\ufffd" in r["func"] and r["target"] == 1


def test_idx_missing_or_repeated_is_renumbered(tmp_path):
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [{"func": "a", "target": 0, "idx": 3}, {"func": "b", "target": 1, "idx": 3},
                       {"func": "c", "target": 1}])
    assert [r["idx"] for r in read_source(f"devign:{path}").records] == [3, 4, 5]


def test_malformed_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    write_jsonl(path, DEVIGN_ROWS + [{"target": 1, "idx": 20}, {"func": "int x;", "target": 2, "idx": 21},
                                     {"func": "int y;", "idx": 22}, [1, 2]],
                extra_lines=["{not json", ""])
    src = read_source(f"devign:{path}")
    assert len(src.records) == 3
    assert src.skipped == {"missing_func": 1, "bad_label": 1, "missing_label": 1, "bad_json": 2}


@pytest.mark.parametrize("line,lineno,what", [
    ("{not json", 4, "not valid JSON"),
    ('{"target": 1}', 4, "'func'"),
    ('{"func": "int x;", "target": "maybe"}', 4, "'target' must be 0 or 1"),
])
def test_strict_raises_on_first_bad_row(tmp_path, line, lineno, what):
    path = tmp_path / "strict.jsonl"
    write_jsonl(path, DEVIGN_ROWS, extra_lines=[line])
    msg = error_of(read_source, f"devign:{path}", strict=True)
    assert f"{path}:{lineno}:" in msg and what in msg
    assert len(read_source(f"devign:{path}").records) == 3      # not strict: skipped


def test_all_rows_bad_is_an_error_naming_the_first_problem(tmp_path):
    path = tmp_path / "wrong_format.jsonl"
    write_jsonl(path, [{"code": "int x;", "label": 1}] * 3)
    msg = error_of(read_source, f"devign:{path}")
    assert str(path) in msg and "no usable records" in msg and "missing_func" in msg and "code" in msg


def test_file_level_errors(tmp_path):
    msg = error_of(read_source, f"devign:{tmp_path / 'nope.jsonl'}")
    assert msg.startswith(f"cannot read data file '{tmp_path / 'nope.jsonl'}'") and "data.source" in msg
    assert "Is a directory" in error_of(read_source, f"devign:{tmp_path}")

    corrupt = tmp_path / "corrupt.jsonl.gz"
    good = gzip.compress(b'{"func": "int x;", "target": 0}\n' * 2000)
    corrupt.write_bytes(good[:20] + bytes(b ^ 0x5A for b in good[20:60]) + good[60:])
    msg = error_of(read_source, f"devign:{corrupt}")
    assert str(corrupt) in msg and "corrupt gzip" in msg

    truncated = tmp_path / "truncated.jsonl.gz"
    truncated.write_bytes(good[: len(good) // 2])
    msg = error_of(read_source, f"devign:{truncated}")
    assert str(truncated) in msg and "corrupt gzip" in msg

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "no usable records" in error_of(read_source, f"devign:{empty}")


def test_spec_errors(tmp_path):
    assert "unknown data source kind 'kaggle'" in error_of(read_source, "kaggle:x")
    assert "needs a path" in error_of(read_source, "devign:")
    assert "unknown option(s) labels" in error_of(read_source, f"devign:{tmp_path}/x.jsonl?labels=y.csv")
    assert "synthetic:N" in error_of(read_source, "synthetic:lots")


def test_synthetic_keeps_dataset_signature():
    src = read_source("synthetic", synthetic_size=40, seed=1, limit=30)
    assert len(src.records) == 30 and src.skipped == {}
    for r in src.records:
        assert set(r) == set(RECORD_KEYS) and r["source"] == "synthetic" and r["lang"] == "c"
    assert read_source("synthetic:12", seed=1).sha256 == read_source("synthetic:12", seed=1).sha256


def test_juliet_small(tmp_path):
    rows = [
        {"idx": 1, "cwe": "CWE-121", "testcase": "CWE121_x_01", "file": "testcases/CWE121/x_01.c", "lang": "c",
         "target": 1, "func": "void ID_0() { char b[10]; b[10] = 0; }"},
        {"idx": 2, "cwe": "122", "testcase": "CWE122_y_02", "file": "testcases/CWE122/y_02.cpp", "target": 0,
         "func": "void ID_0() { int *p = new int[3]; delete[] p; }"},
        {"idx": 3, "cwe": "CWE416", "testcase": "CWE416_z", "file": "z.c", "lang": "C++", "target": 1, "func": "x"},
    ]
    path = tmp_path / "juliet.jsonl.gz"
    write_jsonl(path, rows, gz=True)
    src = read_source(f"juliet:{path}")
    check_schema(src, "juliet")
    assert [(r["cwe"], r["lang"], r["project"]) for r in src.records] == [
        ("CWE-121", "c", "juliet"), ("CWE-122", "cpp", "juliet"), ("CWE-416", "cpp", "juliet")]


@pytest.mark.skipif(not JULIET_VALID.exists(), reason=f"{JULIET_VALID} not present (shared Juliet data not mounted)")
def test_juliet_shared_valid_split():
    src = read_source(f"juliet:{JULIET_VALID}")
    check_schema(src, "juliet")
    assert len(src.records) == 10_689
    assert sum(r["target"] for r in src.records) == 4_443
    assert src.skipped == {}
    import re

    assert all(re.fullmatch(r"CWE-\d+(,CWE-\d+)*", r["cwe"]) for r in src.records)
    assert {r["lang"] for r in src.records} == {"c", "cpp"}
    assert src.sha256 == hashlib.sha256(JULIET_VALID.read_bytes()).hexdigest()


# ---------------------------------------------------------------- bigvul CSV

MULTILINE = 'static int parse(const char *s, int n)\n{\r\n    if (n > 10) {\n        printf("a, \\"b\\"\\n");\n    }\n    return 0;\n}'


def bigvul_csv(rows: list[dict], header: list[str]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue().encode()


BIGVUL_HEADER = ["", "CWE ID", "commit_id", "project", "publish_date", "lang", "func_before", "func_after", "vul"]
BIGVUL_ROWS = [
    {"": 0, "CWE ID": "CWE-119", "commit_id": "c0ffee", "project": "linux", "publish_date": "2017-03-23",
     "lang": "C", "func_before": MULTILINE, "func_after": "x", "vul": 1},
    {"": 1, "CWE ID": "NVD-CWE-Other", "commit_id": "bead", "project": "openssl", "publish_date": "2015-01-02",
     "lang": "C++", "func_before": "int ok(void) { return 1; }", "func_after": "", "vul": 0},
    {"": 2, "CWE ID": "", "commit_id": "", "project": "", "publish_date": "",
     "lang": "", "func_before": "x" * 300_000, "func_after": "", "vul": "0"},
]


def test_bigvul_csv_with_quoted_multiline_code(tmp_path):
    path = tmp_path / "bigvul.csv"
    raw = bigvul_csv(BIGVUL_ROWS, BIGVUL_HEADER)
    path.write_bytes(raw)
    src = read_source(f"bigvul:{path}")
    check_schema(src, "bigvul")
    assert src.sha256 == hashlib.sha256(raw).hexdigest() and src.skipped == {}
    a, b, c = src.records
    assert a["func"] == MULTILINE                           # quoted newlines (and a \r\n) survive
    assert (a["idx"], a["cwe"], a["project"], a["commit_id"], a["date"], a["lang"], a["target"]) == \
        (0, "CWE-119", "linux", "c0ffee", "2017-03-23", "c", 1)
    assert (b["cwe"], b["lang"], b["target"], b["date"]) == ("", "cpp", 0, "2015-01-02")
    assert len(c["func"]) == 300_000                        # longer than csv's default field limit

    gz = tmp_path / "bigvul.csv.gz"
    gz.write_bytes(gzip.compress(raw))
    assert read_source(f"bigvul:{gz}").records == src.records


def test_bigvul_alternative_columns(tmp_path):
    path = tmp_path / "processed.csv"
    path.write_bytes(bigvul_csv([{"processed_func": "int a;", "target": 1, "commit_date": "2020-05-06 10:00:00"},
                                 {"processed_func": "int b;", "target": 0, "commit_date": ""}],
                                ["processed_func", "target", "commit_date"]))
    src = read_source(f"bigvul:{path}")
    assert [(r["func"], r["target"], r["date"], r["idx"]) for r in src.records] == [
        ("int a;", 1, "2020-05-06", 0), ("int b;", 0, "", 1)]


def test_bigvul_errors(tmp_path):
    path = tmp_path / "nocode.csv"
    path.write_bytes(bigvul_csv([{"code": "x", "vul": 1}], ["code", "vul"]))
    msg = error_of(read_source, f"bigvul:{path}")
    assert str(path) in msg and "func_before or processed_func" in msg and "columns found: 'code', 'vul'" in msg

    path = tmp_path / "badlabel.csv"
    rows = [dict(BIGVUL_ROWS[1]), dict(BIGVUL_ROWS[1], vul="high"), dict(BIGVUL_ROWS[1])]
    path.write_bytes(bigvul_csv(rows, BIGVUL_HEADER))
    src = read_source(f"bigvul:{path}")
    assert len(src.records) == 2 and src.skipped == {"bad_label": 1}
    msg = error_of(read_source, f"bigvul:{path}", strict=True)
    assert f"{path}: row 2" in msg and "'vul' must be 0 or 1" in msg and "'high'" in msg

    path = tmp_path / "ragged.csv"
    path.write_text("func_before,vul\n\"int a;\",1\n\"int b;\",0,extra\n")
    assert read_source(f"bigvul:{path}").skipped == {"bad_csv": 1}
    assert "row 2" in error_of(read_source, f"bigvul:{path}", strict=True)

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert "empty CSV" in error_of(read_source, f"bigvul:{empty}")


# ---------------------------------------------------------------- dir tree + labels.csv

def make_tree(root: Path) -> None:
    (root / "src" / "net").mkdir(parents=True)
    (root / "src" / "net" / "a.c").write_text("int a(void) { return 0; }\n")
    (root / "src" / "b.cpp").write_text("int b() { std::string s; return 1; }\n")
    (root / "src" / "c.h").write_bytes(b"#define X 1\nint c(void) { return '\xff'; }\n")
    (root / "src" / "unlisted.cc").write_text("int u() { return 2; }\n")
    (root / "README.md").write_text("not code\n")
    (root / "labels.csv").write_text(
        "path,target,cwe,project\n"
        "src/net/a.c,0,,netlib\n"
        "./src/b.cpp,1,CWE-787,app\n"
        "src/c.h,1,416,app\n"
        "src/gone.c,1,,app\n")


def test_dir_tree_with_labels(tmp_path):
    make_tree(tmp_path)
    src = read_source(f"dir:{tmp_path}")
    check_schema(src, "dir")
    assert [(r["func"][:5], r["target"], r["cwe"], r["project"], r["lang"]) for r in src.records] == [
        ("int a", 0, "", "netlib", "c"), ("int b", 1, "CWE-787", "app", "cpp"), ("#defi", 1, "CWE-416", "app", "c")]
    assert "\ufffd" in src.records[2]["func"]
    assert src.skipped == {"missing_file": 1, "unlabelled_file": 1}
    # the hash covers the labels and every file read
    before = src.sha256
    assert read_source(f"dir:{tmp_path}").sha256 == before
    (tmp_path / "src" / "b.cpp").write_text("int b() { return 2; }\n")
    assert read_source(f"dir:{tmp_path}").sha256 != before
    msg = error_of(read_source, f"dir:{tmp_path}", strict=True)
    assert "labels.csv: row 4" in msg and "gone.c" in msg
    limited = read_source(f"dir:{tmp_path}", limit=1)
    assert len(limited.records) == 1 and limited.skipped == {"unlabelled_file": 1}


def test_dir_other_labels_file_and_errors(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "other.csv").write_text("path,target\nsrc/unlisted.cc,1\n")
    src = read_source(f"dir:{tmp_path}?labels=other.csv")
    assert [(r["target"], r["lang"]) for r in src.records] == [(1, "cpp")]
    assert src.skipped == {"unlabelled_file": 3}

    (tmp_path / "nolabel.csv").write_text("file,label\nsrc/b.cpp,1\n")
    msg = error_of(read_source, f"dir:{tmp_path}?labels=nolabel.csv")
    assert "nolabel.csv" in msg and "path, target" in msg and "columns found: 'file', 'label'" in msg
    msg = error_of(read_source, f"dir:{tmp_path}?labels=missing.csv")
    assert "cannot read data file" in msg and "missing.csv" in msg
    assert "not a directory" in error_of(read_source, f"dir:{tmp_path / 'labels.csv'}")


# ---------------------------------------------------------------- hf

def test_hf_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"code": ["int a;", "int b;", "int c;"], "label": [0, 1, 1],
                                     "cwe_id": ["", "CWE-79", "20"], "project": ["p", "q", "q"]})
    ds.save_to_disk(str(tmp_path / "single"))
    src = read_source(f"hf:{tmp_path / 'single'}?func=code&target=label&cwe=cwe_id")
    check_schema(src, "hf")
    assert [(r["idx"], r["func"], r["target"], r["cwe"], r["project"]) for r in src.records] == [
        (0, "int a;", 0, "", "p"), (1, "int b;", 1, "CWE-79", "q"), (2, "int c;", 1, "CWE-20", "q")]
    assert read_source(f"hf:{tmp_path / 'single'}?func=code&target=label&cwe=cwe_id").sha256 == src.sha256

    msg = error_of(read_source, f"hf:{tmp_path / 'single'}")
    assert "no column 'func'" in msg and "columns found: 'code', 'label'" in msg and "?func=COLUMN" in msg

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"func": ["x", "y"], "target": [1, 0]}),
                               "test": datasets.Dataset.from_dict({"func": ["z"], "target": [True]})})
    dd.save_to_disk(str(tmp_path / "dict"))
    assert [r["func"] for r in read_source(f"hf:{tmp_path / 'dict'}").records] == ["x", "y"]
    assert [(r["func"], r["target"]) for r in read_source(f"hf:{tmp_path / 'dict'}?split=test").records] == [("z", 1)]
    assert "splits found: train, test" in error_of(read_source, f"hf:{tmp_path / 'dict'}?split=valid")


def test_hf_local_data_dir_through_load_dataset(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    data = tmp_path / "jsondir"
    data.mkdir()
    write_jsonl(data / "train.jsonl", DEVIGN_ROWS)
    src = read_source(f"hf:{data}")
    assert [(r["idx"], r["target"], r["project"]) for r in src.records] == [(7, 0, "FFmpeg"), (8, 1, "qemu"), (9, 1, "qemu")]


def test_hf_hub_id_offline_is_a_clear_error(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    msg = error_of(read_source, "hf:streamguard-test/no-such-dataset?split=train")
    assert "'streamguard-test/no-such-dataset' is not available offline" in msg
    assert "save_to_disk" in msg and "hf:DIR" in msg


# ---------------------------------------------------------------- S3 (moto server over HTTP)

def put(s3_env, key: str, data: bytes) -> str:
    import boto3

    boto3.client("s3", endpoint_url=s3_env["endpoint"]).put_object(Bucket=s3_env["bucket"], Key=key, Body=data)
    return f"s3://{s3_env['bucket']}/{key}"


def test_devign_from_s3(s3_env, tmp_path):
    raw = gzip.compress("\n".join(json.dumps(r) for r in DEVIGN_ROWS).encode())
    uri = put(s3_env, "data/devign/train.jsonl.gz", raw)
    src = read_source(f"devign:{uri}")
    check_schema(src, "devign")
    assert src.sha256 == hashlib.sha256(raw).hexdigest()
    local = tmp_path / "train.jsonl.gz"
    local.write_bytes(raw)
    assert src.records == read_source(f"devign:{local}").records
    assert read_bytes(uri) == raw


def test_bigvul_and_dir_from_s3(s3_env, tmp_path):
    raw = bigvul_csv(BIGVUL_ROWS[:2], BIGVUL_HEADER)
    assert [r["func"] for r in read_source(f"bigvul:{put(s3_env, 'bv.csv', raw)}").records] == \
        [MULTILINE, "int ok(void) { return 1; }"]
    make_tree(tmp_path)
    for p in sorted(tmp_path.rglob("*")):
        if p.is_file():
            put(s3_env, f"tree/{p.relative_to(tmp_path).as_posix()}", p.read_bytes())
    s3_src, local_src = read_source(f"dir:s3://{s3_env['bucket']}/tree"), read_source(f"dir:{tmp_path}")
    assert s3_src.records == [dict(r, source="dir") for r in local_src.records]
    assert s3_src.skipped == local_src.skipped and s3_src.sha256 == local_src.sha256


def test_s3_errors(s3_env, monkeypatch):
    msg = error_of(read_source, f"devign:s3://{s3_env['bucket']}/no/such/key.jsonl")
    assert f"s3://{s3_env['bucket']}/no/such/key.jsonl" in msg and "no such key" in msg
    msg = error_of(read_source, "devign:s3://sg-no-such-bucket-xyz/k.jsonl")
    assert "does not exist" in msg

    from tests.conftest import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    msg = error_of(read_source, f"devign:s3://{s3_env['bucket']}/k.jsonl")
    assert "cannot reach S3 endpoint" in msg and "AWS_ENDPOINT_URL" in msg
