"""What the training loop calls for data: prepared shards -> per-split datasets.

Training never parses code. `load_splits` makes sure the data section's sources are
prepared (cached by content; see `prepare.ensure_prepared`) and streams the shards
(local or S3) into `PreparedSplit`s, which each track reads through its own view
(graphs, token windows, or both).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from streamguard.data.prepare import PrepareSettings, ensure_prepared
from streamguard.data.shards import SPLITS, PreparedSplit, read_split, train_columns
from streamguard.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class DataInfo:
    """What model builders need to know about the data (from the manifest)."""

    num_node_types: int
    token_buckets: int
    vocab_size: int | None = None
    counts: dict = field(default_factory=dict)     # split -> {"n", "positive", "negative"}
    skipped: dict = field(default_factory=dict)    # reason -> count
    tiers: dict = field(default_factory=dict)      # tier -> count
    sources: dict = field(default_factory=dict)    # spec -> sha256
    prepared: str = ""                             # where the shards are
    tokenizer: dict | None = None                  # name, vocab_size, sha256, cls/sep/pad ids, max_tokens
    cwe_labels: list = field(default_factory=list) # the CWE head's labels (training split, vulnerable rows)
    encoder: dict | None = None                    # `data augment` features: name, cls_dim, leaf_dim
    num_features: int = 0                          # derived-feature tracks (fusion): features per sample
    extra: dict = field(default_factory=dict)      # track-specific facts (fusion: base runs)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_manifest(cls, manifest: dict, prepared: str = "") -> "DataInfo":
        tok = manifest.get("tokenizer") or {}
        aug = manifest.get("augment") or None
        return cls(num_node_types=manifest["num_node_types"], token_buckets=manifest["token_buckets"],
                   vocab_size=tok.get("vocab_size"), counts=manifest["counts"]["per_split"],
                   skipped=manifest["counts"]["skipped"], tiers=manifest["tiers"],
                   sources={spec: meta["sha256"] for spec, meta in manifest["sources"].items()}, prepared=prepared,
                   tokenizer={**tok, "max_tokens": manifest["settings"]["process"]["max_tokens"]} if tok else None,
                   encoder=aug)


@dataclass
class Splits:
    train: PreparedSplit
    valid: PreparedSplit
    test: PreparedSplit
    info: DataInfo
    holdout: PreparedSplit | None = None
    """With `data.holdout_fold=k`: the training rows of fold k, left out of `train` and scored
    at the end (out-of-fold predictions for fusion)."""


def cwe_vocabulary(split: PreparedSplit) -> list[str]:
    """CWE labels of the vulnerable rows of `split`, most frequent first (ties by name)."""
    cwe, target = split.column("cwe"), split.target
    counts = Counter(c for value, y in zip(cwe, target) if y == 1 and value for c in str(value).split(","))
    return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def cwe_targets(split: PreparedSplit, labels: list[str]) -> np.ndarray:
    """[N, C] multi-hot float32: vulnerable rows get their CWEs; safe rows are all zero."""
    index = {c: i for i, c in enumerate(labels)}
    out = np.zeros((len(split), len(labels)), np.float32)
    for row, (value, y) in enumerate(zip(split.column("cwe"), split.target)):
        if y == 1 and value:
            for c in str(value).split(","):
                if c in index:
                    out[row, index[c]] = 1.0
    return out


def _attach_cwe(parts: dict[str, PreparedSplit], labels: list[str]) -> None:
    if labels:
        for split in parts.values():
            split.cwe = cwe_targets(split, labels)


def load_splits(data, *, seed: int, storage_options: dict | None = None) -> Splits:
    """`data` is the config's data section (the builder turns it into plain settings)."""
    settings = PrepareSettings.from_data_config(data, seed)
    storage, manifest = ensure_prepared(settings, data.prepared_dir, workers=data.workers,
                                        storage_options=storage_options)
    columns = train_columns(manifest)
    pad_id = (manifest.get("tokenizer") or {}).get("pad_id", 0)
    parts = {name: PreparedSplit(read_split(storage, manifest, name, columns), name, pad_id) for name in SPLITS}
    info = DataInfo.from_manifest(manifest, storage.uri)
    if len(parts["train"]) == 0:
        raise DataError(f"no usable training functions in {data.source!r} (skipped: {info.skipped})")
    if len(parts["valid"]) == 0:
        raise DataError("the validation split is empty: raise data.valid_fraction or set data.valid_source")
    info.cwe_labels = cwe_vocabulary(parts["train"])
    _attach_cwe(parts, info.cwe_labels)
    holdout = None
    fold = getattr(data, "holdout_fold", None)
    if fold is not None:
        folds = parts["train"].fold
        if fold >= data.folds or not (folds == fold).any():
            raise DataError(f"data.holdout_fold={fold}: the training split has folds "
                            f"{sorted(set(folds.tolist()))} (data.folds={data.folds})")
        holdout = parts["train"].take(np.flatnonzero(folds == fold), "holdout")
        parts["train"] = parts["train"].take(np.flatnonzero(folds != fold), "train")
    log.info("data from %s: %s%s", storage.uri, {k: len(v) for k, v in parts.items()},
             f" (fold {fold} held out: {len(holdout)})" if holdout is not None else "")
    return Splits(parts["train"], parts["valid"], parts["test"], info, holdout)


def load_spec(spec: str, data, *, seed: int, cwe_labels: list[str] | None = None) -> tuple[PreparedSplit, DataInfo]:
    """Another dataset, whole, prepared with the same settings (for `streamguard evaluate --data`).
    `cwe_labels`: the run's CWE vocabulary, so a CWE head sees the labels it was trained on."""
    settings = PrepareSettings.from_data_config(data, seed)
    settings = replace(settings, source=spec, valid_source=None, test_source=None,
                       valid_fraction=0.0, test_fraction=0.0, limit=None)
    storage, manifest = ensure_prepared(settings, None, workers=data.workers)
    split = PreparedSplit(read_split(storage, manifest, "train", train_columns(manifest)), "data",
                          (manifest.get("tokenizer") or {}).get("pad_id", 0))
    info = DataInfo.from_manifest(manifest)
    info.cwe_labels = list(cwe_labels) if cwe_labels is not None else cwe_vocabulary(split)
    _attach_cwe({"data": split}, info.cwe_labels)
    return split, info
