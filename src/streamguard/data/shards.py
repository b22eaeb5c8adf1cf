"""Prepared data on disk (or S3): Parquet shards per split plus `manifest.json`.

    <dir>/manifest.json
    <dir>/train/part-00000.parquet ...
    <dir>/valid/part-00000.parquet ...
    <dir>/test/part-00000.parquet ...

One row per function: ids, labels, cwe, split and fold; the graph as flat list columns
(node types, hashed leaf tokens, edge src/dst/type, byte spans); the token window (ids
and character offsets); the parse tier. Readers stream the shards (local or S3) into
Arrow memory and build PyG `Data` lazily per item, so nothing is parsed at training time
and no per-sample Python objects are held for the whole dataset.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamguard.errors import DataError
from streamguard.storage import Storage

MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")

_list = pa.list_
SCHEMA = pa.schema([
    ("idx", pa.int64()), ("target", pa.int8()), ("cwe", pa.string()), ("project", pa.string()),
    ("group", pa.string()), ("lang", pa.string()), ("source", pa.string()), ("commit_id", pa.string()),
    ("date", pa.string()), ("split", pa.string()), ("fold", pa.int16()),
    ("func", pa.string()),
    ("tier", pa.string()), ("truncated_nodes", pa.bool_()), ("truncated_source", pa.bool_()),
    ("num_nodes", pa.int32()), ("num_edges", pa.int32()),
    ("node_type", _list(pa.int32())), ("token_id", _list(pa.int32())),
    ("edge_src", _list(pa.int32())), ("edge_dst", _list(pa.int32())), ("edge_type", _list(pa.int8())),
    ("span_start", _list(pa.int32())), ("span_end", _list(pa.int32())),
    ("input_ids", _list(pa.int32())), ("offset_start", _list(pa.int32())), ("offset_end", _list(pa.int32())),
    ("n_tokens_full", pa.int32()), ("window_start", pa.int32()), ("window_reason", pa.string()),
])
# What processing returns: the shard schema plus why a function was skipped (null if kept).
PROCESS_SCHEMA = SCHEMA.append(pa.field("skip_reason", pa.string()))
# What training reads: everything but the source text.
TRAIN_COLUMNS = [f for f in SCHEMA.names if f not in ("func", "span_start", "span_end", "offset_start", "offset_end")]


def write_shards(storage: Storage, split: str, table: pa.Table, *, rows_per_shard: int) -> list[dict]:
    """Write one split as numbered Parquet files; returns [{path, rows, bytes}] for the manifest."""
    written = []
    for i, start in enumerate(range(0, max(1, table.num_rows), rows_per_shard)):
        part = table.slice(start, rows_per_shard)
        buf = io.BytesIO()
        pq.write_table(part, buf, compression="zstd", row_group_size=min(rows_per_shard, 1024))
        key = f"{split}/part-{i:05d}.parquet"
        storage.write_bytes(key, buf.getvalue())
        written.append({"path": key, "rows": part.num_rows, "bytes": buf.tell()})
    return written


def read_manifest(storage: Storage) -> dict:
    try:
        return json.loads(storage.read_bytes(MANIFEST))
    except Exception as exc:  # StorageError or bad JSON
        raise DataError(f"{storage.uri} is not a prepared dataset (no readable {MANIFEST}): {exc}; "
                        "run `streamguard data prepare --source SPEC --out DIR` first") from None


def read_split(storage: Storage, manifest: dict, split: str, columns: list[str] | None = None) -> pa.Table:
    """Stream the split's shards (local file or S3 object, no temp copies) into one Arrow table."""
    tables = []
    for shard in manifest["shards"].get(split, []):
        local = storage.local_path(shard["path"])
        source = str(local) if local is not None else pa.BufferReader(storage.read_bytes(shard["path"]))
        tables.append(pq.read_table(source, columns=columns))
    if not tables:
        return SCHEMA.empty_table().select(columns) if columns else SCHEMA.empty_table()
    return pa.concat_tables(tables)


@dataclass
class _Flat:
    values: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, column: pa.ChunkedArray) -> "_Flat":
        arr = column.combine_chunks()
        return cls(arr.values.to_numpy(zero_copy_only=False), arr.offsets.to_numpy())

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]


class GraphDataset:
    """Map-style dataset over one prepared split: item i -> PyG Data, built on access."""

    def __init__(self, table: pa.Table, edge_kinds: tuple[int, ...] | None = None):
        self.num_rows = table.num_rows
        self.target = table["target"].to_numpy().astype(np.int64)
        self.idx = table["idx"].to_numpy()
        self._cols = {c: _Flat.of(table[c]) for c in ("node_type", "token_id", "edge_src", "edge_dst", "edge_type")}
        self.edge_kinds = None if edge_kinds is None else np.asarray(edge_kinds, dtype=np.int8)

    def __len__(self) -> int:
        return self.num_rows

    def __getitem__(self, i: int):
        import torch
        from torch_geometric.data import Data

        c = self._cols
        src, dst, et = c["edge_src"][i], c["edge_dst"][i], c["edge_type"][i]
        if self.edge_kinds is not None:
            keep = np.isin(et, self.edge_kinds)
            src, dst, et = src[keep], dst[keep], et[keep]
        ei = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
        et_t = torch.from_numpy(et.astype(np.int64))
        x = torch.from_numpy(np.stack([c["node_type"][i], c["token_id"][i]], axis=1).astype(np.int64))
        data = Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], dim=1), edge_type=torch.cat([et_t, et_t]),
                    y=torch.tensor([self.target[i]], dtype=torch.long),
                    sample_id=torch.tensor([int(self.idx[i])], dtype=torch.long))
        return data


class TokenDataset:
    """Map-style dataset over one prepared split: item i -> token window and label."""

    def __init__(self, table: pa.Table):
        self.target = table["target"].to_numpy().astype(np.int64)
        self.idx = table["idx"].to_numpy()
        self._ids = _Flat.of(table["input_ids"])

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self._ids[i].astype(np.int64), "label": int(self.target[i]), "sample_id": int(self.idx[i])}


def collate_tokens(items: list[dict], *, pad_id: int, pad_to_multiple_of: int = 8) -> dict:
    """Pad a list of token windows into a batch (input_ids, attention_mask, labels, sample_ids)."""
    import torch

    longest = max(1, max(len(it["input_ids"]) for it in items))
    length = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(items), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(items), length), dtype=np.int64)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        ids[row, :n], mask[row, :n] = it["input_ids"], 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([it["label"] for it in items]),
            "sample_ids": torch.tensor([it["sample_id"] for it in items])}


def graph_stats(num_nodes: np.ndarray, num_edges: np.ndarray) -> dict:
    def summary(a: np.ndarray) -> dict:
        if a.size == 0:
            return {"mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0}
        return {"mean": round(float(a.mean()), 2), "p50": round(float(np.percentile(a, 50)), 1),
                "p95": round(float(np.percentile(a, 95)), 1), "max": int(a.max())}

    return {"nodes": summary(num_nodes), "edges": summary(num_edges)}


def recommended_batch_size(p95_nodes: float, p95_edges: float, *, hidden: int, layers: int,
                           memory_budget_mb: float, bytes_per_value: int = 4) -> int:
    """Graphs per batch whose activations fit the budget, sized on a P95 graph.

    Per node and layer a message-passing layer keeps about 6 hidden-size vectors alive
    for backward (input, messages, aggregate, norm, activation, dropout mask); per edge
    about 2 (gathered source features and messages). Embeddings add 2 per node. A 2x
    margin covers optimizer state spikes and allocator fragmentation.
    """
    per_graph = bytes_per_value * hidden * (p95_nodes * (6 * layers + 2) + p95_edges * 2 * layers)
    return max(1, int(memory_budget_mb * 2**20 / (2 * max(per_graph, 1))))
