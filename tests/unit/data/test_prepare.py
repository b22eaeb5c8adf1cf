"""Prepared shards: counts add up, caching, robustness to hostile input, S3, Ray == pool."""

from __future__ import annotations

import json
import os
import random

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamguard.data.prepare import PrepareSettings, prepare
from streamguard.data.process import ProcessSettings, process_record
from streamguard.data.shards import MANIFEST, SPLITS, GraphDataset, read_manifest, read_split
from streamguard.storage import open_storage

HOSTILE = {
    "random_bytes": bytes(random.Random(0).getrandbits(8) for _ in range(3000)).decode("latin-1"),
    "truncated": "int f(int a) { if (a > 1) { return g(a",
    "unbalanced": "void f() {{{ x = 1; }}}}}}} ) ) ]",
    "non_utf8": b"int f() { char *s = \"\xff\xfe\xfd\"; return 0; }".decode("utf-8", errors="replace"),
    "nul_bytes": "int f() { char c = '\x00'; return c\x00; }",
    "huge_5mb": "int f() {\n" + "  x = x + 1;\n" * 450_000 + "}\n",
    "deep_nesting": "void f() {" + "if (x) {" * 10_000 + "}" * 10_000 + "}",
    "empty": "",
    "whitespace": "   \n\t ",
}


def _write_jsonl(path, funcs: dict[str, str], target=1):
    path.write_text("\n".join(json.dumps({"func": f, "target": target, "idx": i, "project": "p"})
                              for i, f in enumerate(funcs.values())))


def _settings(source, **kw) -> PrepareSettings:
    kw = {"valid_fraction": 0.2, "test_fraction": 0.2, "folds": 2,
          "process": ProcessSettings(max_source_bytes=1_000_000), **kw}
    return PrepareSettings(source=source, **kw)


def test_synthetic_prepare_counts_add_up_and_reads_back(tmp_path):
    m = prepare(_settings("synthetic:300"), str(tmp_path / "p"), workers=1, progress=False)
    c = m["counts"]
    kept = sum(v["n"] for v in c["per_split"].values())
    assert kept == c["kept"] and c["input"] == 300
    assert c["input"] == kept + sum(c["dedup"].values()) + sum(c["skipped"].values())
    assert set(m["tiers"]) <= {"full", "partial", "tokens"} and m["tier_rates"]["full"] > 0.99
    assert {"mean", "p50", "p95", "max"} <= set(m["graph_stats"]["nodes"])
    assert m["batch_size"]["recommended"] >= 1 and m["edge_kinds"][:2] == ["ast", "ncs"]
    storage = open_storage(str(tmp_path / "p"))
    train = read_split(storage, read_manifest(storage), "train")
    assert train.num_rows == c["per_split"]["train"]["n"]
    assert set(train["fold"].to_pylist()) == {0, 1}
    row = train.slice(0, 1).to_pylist()[0]
    assert row["num_nodes"] == len(row["node_type"]) == len(row["span_start"])
    assert max(row["edge_src"] + row["edge_dst"]) < row["num_nodes"]
    assert row["input_ids"] and len(row["input_ids"]) <= 512 and len(row["offset_start"]) == len(row["input_ids"])
    data = GraphDataset(train)[0]
    assert data.x.shape == (row["num_nodes"], 2) and data.edge_index.shape[1] == 2 * row["num_edges"]


def test_rerun_is_cached_and_force_rebuilds(tmp_path):
    out = str(tmp_path / "p")
    first = prepare(_settings("synthetic:60"), out, workers=1, progress=False)
    shard = tmp_path / "p" / first["shards"]["train"][0]["path"]
    mtime = shard.stat().st_mtime_ns
    again = prepare(_settings("synthetic:60"), out, workers=1, progress=False)
    assert again["created"] == first["created"] and shard.stat().st_mtime_ns == mtime
    changed = prepare(_settings("synthetic:60", dedup=False), out, workers=1, progress=False)
    assert changed["cache_key"] != first["cache_key"]
    forced = prepare(_settings("synthetic:60", dedup=False), out, workers=1, force=True, progress=False)
    assert forced["cache_key"] == changed["cache_key"] and shard.stat().st_mtime_ns != mtime


@pytest.mark.timeout(300)
def test_hostile_functions_are_counted_never_raise_never_hang(tmp_path):
    src = tmp_path / "hostile.jsonl"
    _write_jsonl(src, HOSTILE)
    m = prepare(_settings(f"devign:{src}", dedup=False, valid_fraction=0.0, test_fraction=0.0),
                str(tmp_path / "p"), workers=1, progress=False)
    c = m["counts"]
    assert c["input"] == len(HOSTILE)
    assert c["skipped"].get("oversize") == 1  # the 5 MB function (limit 1 MB, policy skip)
    assert c["skipped"].get("empty") == 2
    assert c["kept"] == len(HOSTILE) - 3
    assert not any(k.startswith("failed") for k in c["skipped"])
    assert m["tiers"].get("partial", 0) + m["tiers"].get("tokens", 0) >= 3  # truncated, unbalanced, random


def test_truncate_policy_keeps_oversize_functions(tmp_path):
    src = tmp_path / "big.jsonl"
    _write_jsonl(src, {"huge": HOSTILE["huge_5mb"], "ok": "int f() { return 1; }"})
    proc = ProcessSettings(max_source_bytes=20_000, oversize="truncate", max_nodes=500)
    m = prepare(_settings(f"devign:{src}", valid_fraction=0.0, test_fraction=0.0, process=proc),
                str(tmp_path / "p"), workers=1, progress=False)
    assert m["counts"]["kept"] == 2 and m["counts"]["truncated_source"] == 1 and m["counts"]["truncated_nodes"] == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("{}()[];=+-*/<>!&|,.\"'\\\n\t #ifelsewhiledoforreturngotobreak x1") +
                                        ["\x00", "\ufffd", "é"]), max_size=400))
def test_any_text_gives_a_consistent_row_or_a_reason(text):
    row, reason = process_record({"func": text, "target": 0, "idx": 0, "lang": "c"}, ProcessSettings(tokenizer=None))
    if row is None:
        assert reason in {"empty", "oversize"}
        return
    n = row["num_nodes"]
    assert n == len(row["node_type"]) == len(row["token_id"]) == len(row["span_start"])
    assert len(row["edge_src"]) == len(row["edge_dst"]) == len(row["edge_type"]) == row["num_edges"]
    if row["num_edges"]:
        assert 0 <= min(row["edge_src"].min(), row["edge_dst"].min()) and max(row["edge_src"].max(), row["edge_dst"].max()) < n
    assert row["tier"] in {"full", "partial", "tokens"}


def test_prepare_to_and_from_s3(s3_env, tmp_path):
    import boto3

    bucket = s3_env["bucket"]
    s3 = boto3.client("s3", endpoint_url=s3_env["endpoint"])
    src = tmp_path / "d.jsonl"
    _write_jsonl(src, {f"f{i}": f"int f{i}(int a) {{ return a + {i}; }}" for i in range(40)})
    s3.upload_file(str(src), bucket, "raw/d.jsonl")
    out = f"s3://{bucket}/prepared/d"
    m = prepare(_settings(f"devign:s3://{bucket}/raw/d.jsonl"), out, workers=1, progress=False)
    assert m["counts"]["kept"] == 40
    storage = open_storage(out)
    assert storage.exists(MANIFEST) and read_split(storage, read_manifest(storage), "train").num_rows > 0


def _shard_bytes(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


@pytest.mark.timeout(600)
def test_ray_data_and_process_pool_write_identical_shards(tmp_path, ray_local):
    settings_ = _settings("synthetic:150")
    pool = prepare(settings_, str(tmp_path / "pool"), workers=2, progress=False)
    ray_ = prepare(settings_, str(tmp_path / "ray"), use_ray=True, progress=False)
    assert pool["counts"] == ray_["counts"] and pool["cache_key"] == ray_["cache_key"]
    a, b = _shard_bytes(tmp_path / "pool"), _shard_bytes(tmp_path / "ray")
    assert a.keys() == b.keys() and a == b
    for split in SPLITS:
        for shard in pool["shards"][split]:
            assert pq.read_table(tmp_path / "pool" / shard["path"]).equals(pq.read_table(tmp_path / "ray" / shard["path"]))


def test_token_batches_from_shards(tmp_path):
    from streamguard.data.shards import TokenDataset, collate_tokens
    from streamguard.data.tokens import load_tokenizer

    m = prepare(_settings("synthetic:60"), str(tmp_path / "p"), workers=1, progress=False)
    storage = open_storage(str(tmp_path / "p"))
    ds = TokenDataset(read_split(storage, m, "train"))
    pad = load_tokenizer("builtin:c-bpe").pad_id
    items = [ds[i] for i in range(4)]
    batch = collate_tokens(items, pad_id=pad, pad_to_multiple_of=8)
    longest = max(len(it["input_ids"]) for it in items)
    assert batch["input_ids"].shape == (4, -(-longest // 8) * 8)
    assert batch["attention_mask"].sum(1).tolist() == [len(it["input_ids"]) for it in items]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == pad).all()
    assert batch["labels"].tolist() == [it["label"] for it in items]
