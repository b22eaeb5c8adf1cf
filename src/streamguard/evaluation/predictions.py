"""Reading what runs, evaluations and ensembles wrote: per-sample scores, aligned by id.

A run directory (`streamguard train`), an evaluation directory (`streamguard evaluate`)
and an ensemble directory (`streamguard ensemble`) all hold a predictions file:

    {"split": "test", "sample_id": [...], "label": [...], "prob": [...],
     "valid": {"sample_id": [...], "label": [...], "prob": [...]}}   # valid: runs and ensembles

(`predictions.json`, or `ensemble_predictions.json` in an ensemble directory), next to its
metrics file. Local paths and s3:// URIs are both read through `streamguard.storage`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from streamguard.errors import DataError, StorageError
from streamguard.storage import join, open_storage

PREDICTIONS = ("predictions.json", "ensemble_predictions.json")
METRICS = ("metrics.json", "ensemble_metrics.json")


@dataclass
class Scored:
    """One split's scores, sorted by sample id."""

    ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def from_json(cls, obj: dict, where: str) -> Scored:
        try:
            ids = np.asarray(obj["sample_id"], dtype=np.int64)
            labels = np.asarray(obj["label"], dtype=np.int64)
            probs = np.asarray(obj["prob"], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed predictions ({type(exc).__name__}: {exc}); expected lists "
                            "sample_id, label and prob") from None
        if not (ids.shape == labels.shape == probs.shape) or ids.ndim != 1:
            raise DataError(f"{where}: sample_id, label and prob have different lengths "
                            f"({ids.size}, {labels.size}, {probs.size})")
        if np.unique(ids).size != ids.size:
            raise DataError(f"{where}: {ids.size - np.unique(ids).size} repeated sample ids")
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], labels[order], probs[order])


@dataclass
class Predictions:
    """Everything one scored directory offers: the scored split, validation scores when
    saved, its metrics and (for runs) its config."""

    uri: str
    name: str
    split: str
    test: Scored
    valid: Scored | None = None
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    @property
    def seed(self) -> int | None:
        return (self.config.get("run") or {}).get("seed")

    @property
    def threshold(self) -> float | None:
        """The threshold this model was picked with on validation (metrics' external threshold)."""
        t = self.metrics.get("external_threshold")
        return None if t is None else float(t)


def _read_json(storage, key: str, where: str):
    try:
        return json.loads(storage.read_bytes(key))
    except StorageError:
        return None
    except ValueError as exc:
        raise DataError(f"{where}/{key} is not valid JSON: {exc}") from None


def load_predictions(uri: str) -> Predictions:
    """Read a run, evaluation or ensemble directory (local or s3://)."""
    uri = uri.rstrip("/") or uri
    if "://" not in uri and not Path(uri).expanduser().is_dir():
        raise DataError(f"{uri}: no such directory; pass a run directory written by `streamguard train`")
    storage = open_storage(uri)
    obj = key = None
    for key in PREDICTIONS:
        obj = _read_json(storage, key, uri)
        if obj is not None:
            break
    if obj is None:
        raise DataError(f"{uri}: no predictions.json; pass a run directory written by `streamguard train` (or by "
                        "`streamguard evaluate` / `streamguard ensemble`)")
    where = join(uri, key)
    test = Scored.from_json(obj, where)
    valid = Scored.from_json(obj["valid"], f"{where} (valid)") if isinstance(obj.get("valid"), dict) else None
    metrics = next((m for m in (_read_json(storage, k, uri) for k in METRICS) if m is not None), {})
    config = {}
    raw = None
    try:
        raw = storage.read_bytes("config.yaml")
    except StorageError:
        pass
    if raw is not None:
        try:
            config = yaml.safe_load(raw) or {}
        except yaml.YAMLError:
            config = {}
    name = uri.rstrip("/").rpartition("/")[2] or uri
    return Predictions(uri=uri, name=name, split=str(obj.get("split", "test")), test=test, valid=valid,
                       metrics=metrics if isinstance(metrics, dict) else {},
                       config=config if isinstance(config, dict) else {})


def check_aligned(items: list[Predictions], *, split: str = "test") -> None:
    """Every item scored the same samples (ids) with the same labels, on `split` ("test" or
    "valid"); DataError naming the first mismatch otherwise."""
    if not items:
        return
    first = items[0]
    ref: Scored | None = getattr(first, split)
    for other in items[1:]:
        cur: Scored | None = getattr(other, split)
        if ref is None or cur is None:
            missing = first if ref is None else other
            raise DataError(f"{missing.uri}: predictions.json has no validation scores; re-run its `streamguard train` "
                            "command (a finished run re-scores its best checkpoint and saves them)")
        if len(ref) != len(cur) or not np.array_equal(ref.ids, cur.ids):
            only_a = np.setdiff1d(ref.ids, cur.ids).size
            only_b = np.setdiff1d(cur.ids, ref.ids).size
            raise DataError(
                f"{other.uri} and {first.uri} did not score the same {split} samples ({len(cur)} vs {len(ref)}; "
                f"{only_b} ids only in the first, {only_a} only in the second): compare and ensemble runs trained on "
                "the same prepared data -- run.seed also seeds the data split, so train seed runs on "
                "data.source=prepared:DIR (from `streamguard data prepare`)")
        if not np.array_equal(ref.labels, cur.labels):
            bad = int((ref.labels != cur.labels).sum())
            raise DataError(f"{other.uri} and {first.uri}: {bad} {split} samples with the same id have different "
                            "labels; these runs were not scored on the same data")
