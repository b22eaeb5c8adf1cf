"""`streamguard data augment`: add transformer encoder features to prepared shards, once,
offline, so GNN training can use them without running (or even having) the encoder.

For every function, the encoder reads a window of its own tokenizer's tokens (the same
risky-API-aware window as `data prepare`) and two optional columns are written:
- `enc_cls`: the CLS vector (`[hidden]`), concatenated after pooling by `model.gnn.encoder=cls`;
- `enc_leaf`: for every leaf node of the graph (node order), the mean of the encoder's
  token vectors overlapping the leaf's byte span, projected to `leaf_dim` by a fixed seeded
  random projection (`[n_leaves * leaf_dim]`, zeros outside the window); added to the leaf
  embeddings by `model.gnn.encoder=leaf`.

The output is a new prepared dataset (every shard rewritten with the new columns, the
manifest last, with an `augment` section), used as `data.source=prepared:OUT`.
"""

from __future__ import annotations

import io
import json
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamguard.data.shards import AUGMENT_FIELDS, MANIFEST, SPLITS, read_manifest
from streamguard.errors import DataError
from streamguard.storage import open_storage

log = logging.getLogger(__name__)
MODES = ("cls", "leaf", "both")


def leaf_vectors(states: np.ndarray, token_spans: np.ndarray, leaf_spans: np.ndarray) -> np.ndarray:
    """[n_leaves, H]: mean of the token vectors whose byte span overlaps each leaf's
    (zeros for a leaf no token overlaps). states [T, H]; spans [*, 2] as [start, end)."""
    if len(leaf_spans) == 0 or len(token_spans) == 0:
        return np.zeros((len(leaf_spans), states.shape[1]), np.float32)
    overlap = ((token_spans[None, :, 0] < leaf_spans[:, None, 1]) & (leaf_spans[:, None, 0] < token_spans[None, :, 1])
               & (token_spans[None, :, 1] > token_spans[None, :, 0]))
    counts = overlap.sum(1, keepdims=True)
    return (overlap.astype(np.float32) @ states / np.maximum(counts, 1)).astype(np.float32)


def augment(src: str, out: str, *, encoder: str, mode: str = "both", leaf_dim: int = 32, batch_size: int = 16,
            max_tokens: int = 512, device: str = "auto", seed: int = 0, storage_options: dict | None = None) -> dict:
    import torch

    from streamguard.data.tokens import char_to_byte_offsets, load_tokenizer, tokenize_function, tokenizer_fingerprint
    from streamguard.pretrained import load_auto_model, position_limit
    from streamguard.runtime import pick_device

    if mode not in MODES:
        raise DataError(f"unknown augment mode {mode!r}; choose one of {', '.join(MODES)}")
    started = time.time()
    source = open_storage(src.removeprefix("prepared:"), **(storage_options or {}))
    manifest = read_manifest(source)
    target = open_storage(out, **(storage_options or {}))
    tok = load_tokenizer(encoder)
    model = load_auto_model(encoder)
    dev = pick_device(device)
    model.to(dev).eval()
    limit = position_limit(model)
    window = min(max_tokens, limit) if limit else max_tokens
    hidden = model.config.hidden_size
    proj = np.random.default_rng(seed).standard_normal((hidden, leaf_dim)).astype(np.float32) / np.sqrt(leaf_dim)
    columns = [c for c, on in (("enc_cls", mode in ("cls", "both")), ("enc_leaf", mode in ("leaf", "both"))) if on]

    def encode(texts: list[str]):
        windows = [tokenize_function(tok, t, max_len=window) for t in texts]
        length = max(len(w["input_ids"]) for w in windows)
        ids = np.full((len(texts), length), tok.pad_id, np.int64)
        mask = np.zeros_like(ids)
        for r, w in enumerate(windows):
            ids[r, :len(w["input_ids"])], mask[r, :len(w["input_ids"])] = w["input_ids"], 1
        with torch.no_grad():
            states = model(input_ids=torch.from_numpy(ids).to(dev),
                           attention_mask=torch.from_numpy(mask).to(dev)).last_hidden_state.float().cpu().numpy()
        return windows, states

    if target.exists(MANIFEST):
        target.delete(MANIFEST)
    shards: dict[str, list[dict]] = {}
    n_done = 0
    for split in SPLITS:
        shards[split] = []
        for shard in manifest["shards"].get(split, []):
            local = source.local_path(shard["path"])
            table = pq.read_table(str(local) if local is not None else pa.BufferReader(source.read_bytes(shard["path"])))
            table = table.drop_columns([c for c in AUGMENT_FIELDS if c in table.column_names])
            funcs = table["func"].to_pylist()
            token_ids = table["token_id"].to_pylist()
            starts, ends = table["span_start"].to_pylist(), table["span_end"].to_pylist()
            cls_rows, leaf_rows = [], []
            for lo in range(0, len(funcs), batch_size):
                windows, states = encode(funcs[lo:lo + batch_size])
                for r, w in enumerate(windows):
                    i = lo + r
                    cls_rows.append(states[r, 0])
                    if "enc_leaf" in columns:
                        n = len(w["input_ids"])
                        spans = np.asarray(char_to_byte_offsets(funcs[i], w["offsets"]), np.int64).reshape(-1, 2)
                        leaves = np.flatnonzero(np.asarray(token_ids[i]))
                        leaf_spans = np.stack([np.asarray(starts[i])[leaves], np.asarray(ends[i])[leaves]], 1) \
                            if len(leaves) else np.zeros((0, 2), np.int64)
                        leaf_rows.append((leaf_vectors(states[r, :n], spans, leaf_spans) @ proj).ravel())
                n_done += len(windows)
            if "enc_cls" in columns:
                table = table.append_column(AUGMENT_FIELDS["enc_cls"], pa.array([v.tolist() for v in cls_rows],
                                                                                type=AUGMENT_FIELDS["enc_cls"].type))
            if "enc_leaf" in columns:
                table = table.append_column(AUGMENT_FIELDS["enc_leaf"], pa.array([v.tolist() for v in leaf_rows],
                                                                                 type=AUGMENT_FIELDS["enc_leaf"].type))
            buf = io.BytesIO()
            pq.write_table(table, buf, compression="zstd", row_group_size=1024)
            target.write_bytes(shard["path"], buf.getvalue())
            shards[split].append({"path": shard["path"], "rows": table.num_rows, "bytes": buf.tell()})
            log.info("augmented %s (%d functions so far)", shard["path"], n_done)
    info = {"encoder": encoder, "tokenizer_sha256": tokenizer_fingerprint(tok), "mode": mode, "columns": columns,
            "cls_dim": hidden if "enc_cls" in columns else None, "leaf_dim": leaf_dim if "enc_leaf" in columns else None,
            "max_tokens": window, "projection_seed": seed, "source": source.uri,
            "seconds": round(time.time() - started, 2)}
    new = {**manifest, "augment": info, "shards": shards}
    target.write_bytes(MANIFEST, json.dumps(new, indent=2, sort_keys=True).encode())
    log.info("augmented %d functions with %s (%s) into %s in %.1fs", n_done, encoder, mode, target.uri, info["seconds"])
    return new
