"""What the training loop calls for data: prepared shards -> per-split datasets.

Training never parses code. `load_splits` makes sure the data section's sources are
prepared (cached by content; see `prepare.ensure_prepared`) and streams the shards
(local or S3) into map-style datasets that build PyG `Data` objects on access.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from streamguard.data.prepare import PrepareSettings, ensure_prepared
from streamguard.data.shards import SPLITS, TRAIN_COLUMNS, GraphDataset, read_split
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

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_manifest(cls, manifest: dict, prepared: str = "") -> "DataInfo":
        tok = manifest.get("tokenizer") or {}
        return cls(num_node_types=manifest["num_node_types"], token_buckets=manifest["token_buckets"],
                   vocab_size=tok.get("vocab_size"), counts=manifest["counts"]["per_split"],
                   skipped=manifest["counts"]["skipped"], tiers=manifest["tiers"],
                   sources={spec: meta["sha256"] for spec, meta in manifest["sources"].items()}, prepared=prepared)


@dataclass
class Splits:
    train: GraphDataset
    valid: GraphDataset
    test: GraphDataset
    info: DataInfo


def load_splits(data, *, seed: int, storage_options: dict | None = None) -> Splits:
    """`data` is the config's data section (the builder turns it into plain settings)."""
    settings = PrepareSettings.from_data_config(data, seed)
    storage, manifest = ensure_prepared(settings, data.prepared_dir, workers=data.workers,
                                        storage_options=storage_options)
    parts = {name: GraphDataset(read_split(storage, manifest, name, TRAIN_COLUMNS)) for name in SPLITS}
    info = DataInfo.from_manifest(manifest, storage.uri)
    if len(parts["train"]) == 0:
        raise DataError(f"no usable training functions in {data.source!r} (skipped: {info.skipped})")
    if len(parts["valid"]) == 0:
        raise DataError("the validation split is empty: raise data.valid_fraction or set data.valid_source")
    log.info("data from %s: %s", storage.uri, {k: len(v) for k, v in parts.items()})
    return Splits(parts["train"], parts["valid"], parts["test"], info)


def load_spec(spec: str, data, *, seed: int) -> tuple[GraphDataset, DataInfo]:
    """Another dataset, whole, prepared with the same settings (for `streamguard evaluate --data`)."""
    settings = PrepareSettings.from_data_config(data, seed)
    settings = replace(settings, source=spec, valid_source=None, test_source=None,
                       valid_fraction=0.0, test_fraction=0.0, limit=None)
    storage, manifest = ensure_prepared(settings, None, workers=data.workers)
    return GraphDataset(read_split(storage, manifest, "train", TRAIN_COLUMNS)), DataInfo.from_manifest(manifest)
