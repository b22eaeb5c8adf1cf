"""Prepared data on disk (or S3): Parquet shards per split plus `manifest.json`.

    <dir>/manifest.json
    <dir>/train/part-00000.parquet ...
    <dir>/valid/part-00000.parquet ...
    <dir>/test/part-00000.parquet ...

One row per function: ids, labels, cwe, an optional confidence weight, split and fold;
the graph as flat list columns (node types, hashed leaf tokens, edge src/dst/type, byte
spans); the token window (ids and character offsets); the parse tier. `streamguard data
augment` may add encoder features (`enc_cls`, `enc_leaf`; see `AUGMENT_COLUMNS`).

Readers stream the shards (local or S3) into Arrow memory as a `PreparedSplit`, and each
track reads it through a view that builds items lazily (`GraphDataset`: PyG `Data`;
`TokenDataset`: a token window), so nothing is parsed at training time and no per-sample
Python objects are held for the whole dataset.
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
    ("idx", pa.int64()), ("target", pa.int8()), ("cwe", pa.string()), ("weight", pa.float32()), ("project", pa.string()),
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
# Optional columns written by `streamguard data augment` (manifest["augment"] says which):
# a transformer CLS vector per function, and encoder token vectors averaged onto leaf nodes
# (row-major [n_leaves, dim], leaves in node order; a leaf is a node with token_id != 0).
AUGMENT_COLUMNS = ("enc_cls", "enc_leaf")
AUGMENT_FIELDS = {name: pa.field(name, _list(pa.float32())) for name in AUGMENT_COLUMNS}
# Relation ids seen by models: an edge kind k (parse.EDGE_KINDS) forward is k, its reverse
# (datasets add every edge both ways) is k + NUM_EDGE_KINDS.
NUM_EDGE_KINDS = 4


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
        schema = pa.schema([*SCHEMA, *(f for name, f in AUGMENT_FIELDS.items() if columns and name in columns)])
        return schema.empty_table().select(columns) if columns else SCHEMA.empty_table()
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


def train_columns(manifest: dict) -> list[str]:
    """The columns training reads from a prepared dataset: TRAIN_COLUMNS plus any augment
    columns the manifest lists."""
    extra = [c for c in (manifest.get("augment") or {}).get("columns", []) if c in AUGMENT_COLUMNS]
    return [*TRAIN_COLUMNS, *extra]


class PreparedSplit:
    """One prepared split in Arrow memory (training columns only); what the loop hands to a
    track's `make_loader`, which reads it through a view (`GraphDataset`, `TokenDataset`).

    Per-sample extras travel with every item when set: `sample_weight` [N] (loss weights,
    set by the loop from `train.sample_weights`) and `cwe` [N, C] (multi-hot CWE targets,
    set by `load_splits` from the training split's CWE vocabulary)."""

    def __init__(self, table: pa.Table, name: str = "", pad_id: int = 0):
        self.table, self.name = table, name
        self.pad_id = pad_id  # the tokenizer's pad id (from the manifest), for padding token batches
        self.target = table["target"].to_numpy().astype(np.int64)
        self.idx = table["idx"].to_numpy()
        self.fold = (table["fold"].to_numpy(zero_copy_only=False).astype(np.int64) if "fold" in table.column_names
                     else np.full(table.num_rows, -1, np.int64))
        self.sample_weight: np.ndarray | None = None
        self.cwe: np.ndarray | None = None
        self._views: dict = {}

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> np.ndarray:
        return self.table[name].to_numpy(zero_copy_only=False)

    def take(self, rows: np.ndarray, name: str | None = None) -> "PreparedSplit":
        """The rows at `rows` (with their extras), as a new split."""
        rows = np.asarray(rows, dtype=np.int64)
        out = PreparedSplit(self.table.take(pa.array(rows)), name or self.name, self.pad_id)
        if self.sample_weight is not None:
            out.sample_weight = self.sample_weight[rows]
        if self.cwe is not None:
            out.cwe = self.cwe[rows]
        return out

    def view(self, key, factory):
        """A view built once per split (views copy list columns into flat numpy arrays)."""
        if key not in self._views:
            self._views[key] = factory(self)
        return self._views[key]

    def extras(self, i: int) -> dict:
        out = {}
        if self.sample_weight is not None:
            out["weight"] = float(self.sample_weight[i])
        if self.cwe is not None:
            out["cwe"] = self.cwe[i]
        return out


def _as_split(data) -> PreparedSplit:
    return data if isinstance(data, PreparedSplit) else PreparedSplit(data)


class GraphDataset:
    """Map-style view of a prepared split: item i -> PyG `Data` built on access, with
    `x` [nodes, 2] (node type, hashed leaf token), `edge_index` (every edge both ways),
    `edge_type` (relation ids, see NUM_EDGE_KINDS), `y`, `sample_id`; and when present
    `weight` [1], `cwe` [1, C], `enc_cls` [1, D], `enc_node` [nodes, D]."""

    def __init__(self, data, edge_kinds: tuple[int, ...] | None = None):
        self.split = _as_split(data)
        table = self.split.table
        self.num_rows = table.num_rows
        self.target, self.idx = self.split.target, self.split.idx
        self._cols = {c: _Flat.of(table[c]) for c in ("node_type", "token_id", "edge_src", "edge_dst", "edge_type")}
        self._enc = {c: _Flat.of(table[c]) for c in AUGMENT_COLUMNS if c in table.column_names}
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
        tokens = c["token_id"][i]
        x = torch.from_numpy(np.stack([c["node_type"][i], tokens], axis=1).astype(np.int64))
        data = Data(x=x, edge_index=torch.cat([ei, ei.flip(0)], dim=1),
                    edge_type=torch.cat([et_t, et_t + NUM_EDGE_KINDS]),
                    y=torch.tensor([self.target[i]], dtype=torch.long),
                    sample_id=torch.tensor([int(self.idx[i])], dtype=torch.long))
        if "enc_cls" in self._enc:
            data.enc_cls = torch.from_numpy(self._enc["enc_cls"][i].astype(np.float32))[None]
        if "enc_leaf" in self._enc:
            leaf = self._enc["enc_leaf"][i].astype(np.float32)
            leaves = np.flatnonzero(tokens)
            dim = leaf.size // max(1, leaves.size) if leaves.size else 0
            node = np.zeros((len(tokens), dim), np.float32)
            if leaves.size:
                node[leaves] = leaf.reshape(leaves.size, dim)
            data.enc_node = torch.from_numpy(node)
        for key, value in self.split.extras(i).items():
            data[key] = torch.tensor([value], dtype=torch.float32) if key == "weight" else torch.from_numpy(value)[None]
        return data


class TokenDataset:
    """Map-style view of a prepared split: item i -> token window, label, id (and the extras)."""

    def __init__(self, data):
        self.split = _as_split(data)
        self.target, self.idx = self.split.target, self.split.idx
        self._ids = _Flat.of(self.split.table["input_ids"])

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self._ids[i].astype(np.int64), "label": int(self.target[i]),
                "sample_id": int(self.idx[i]), **self.split.extras(i)}


def collate_tokens(items: list[dict], *, pad_id: int, pad_to_multiple_of: int = 8) -> dict:
    """Pad a list of token windows into a batch (input_ids, attention_mask, labels,
    sample_ids; plus `weight` [B] and `cwe` [B, C] when the items carry them)."""
    import torch

    multiple = max(1, pad_to_multiple_of)
    longest = max(1, max(len(it["input_ids"]) for it in items))
    length = -(-longest // multiple) * multiple
    ids = np.full((len(items), length), pad_id, dtype=np.int64)
    mask = np.zeros((len(items), length), dtype=np.int64)
    for row, it in enumerate(items):
        n = len(it["input_ids"])
        ids[row, :n], mask[row, :n] = it["input_ids"], 1
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
             "labels": torch.tensor([it["label"] for it in items]),
             "sample_ids": torch.tensor([it["sample_id"] for it in items])}
    if "weight" in items[0]:
        batch["weight"] = torch.tensor([it["weight"] for it in items], dtype=torch.float32)
    if "cwe" in items[0]:
        batch["cwe"] = torch.from_numpy(np.stack([it["cwe"] for it in items]))
    return batch


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
