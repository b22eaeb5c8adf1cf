"""`fusion` track: a small stacker (logistic regression or an MLP) on the out-of-fold logits
of base models, with a weighted average of their probabilities as the baseline.

Where the features come from (`load_data`):
- each base in `model.fusion.bases` is either trained here, once per fold of the training
  split (`data.holdout_fold=k`, folds from the prepared data's `fold` column), as ordinary
  resumable runs named `<run>-<base>-fold<k>`, or read from existing fold runs
  (`runs: runs/x-fold{fold}`);
- every fold run wrote `fold_predictions.json`: margins (logit_vulnerable - logit_safe) for
  the fold it never trained on, for validation and for test, and the ids it trained on;
- a training sample's feature is the margin from the run whose held-out fold holds it. This
  is checked sample by sample (it must not be among that run's training ids): no sample is
  scored by a model that saw it. Validation and test features average the K fold models.

The stacker then trains in the one loop like any track (same checkpoints, same
metrics.json); the baseline's and each base's scores go into metrics.json under `fusion`.
"""

from __future__ import annotations

import json
import logging
import signal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from streamguard.errors import ConfigError, DataError, StorageError
from streamguard.registry import TrackSpec
from streamguard.tracks.common import loader_options, output
from streamguard.train.folds import FOLD_PREDICTIONS

log = logging.getLogger(__name__)


class FeatureSplit:
    """Stacking features of one split: [N, n_bases] margins, labels, ids, folds."""

    def __init__(self, features: np.ndarray, target: np.ndarray, idx: np.ndarray, fold: np.ndarray, name: str = ""):
        self.features = np.asarray(features, np.float32)
        self.target, self.idx = np.asarray(target, np.int64), np.asarray(idx, np.int64)
        self.fold, self.name = np.asarray(fold, np.int64), name
        self.sample_weight: np.ndarray | None = None
        self.cwe = None
        self.pad_id = 0

    def __len__(self) -> int:
        return len(self.target)

    def __getitem__(self, i: int) -> dict:
        item = {"features": torch.from_numpy(self.features[i]), "label": int(self.target[i]),
                "sample_id": int(self.idx[i])}
        if self.sample_weight is not None:
            item["weight"] = float(self.sample_weight[i])
        return item


class Stacker(nn.Module):
    """features [B, F] -> logits [B, 2]. `logistic`: one linear score (the safe logit is 0)."""

    def __init__(self, num_features: int, kind: str, hidden: int):
        super().__init__()
        self.kind = kind
        self.net = (nn.Linear(num_features, 1) if kind == "logistic" else
                    nn.Sequential(nn.Linear(num_features, hidden), nn.ReLU(), nn.Linear(hidden, 2)))

    def forward(self, features: torch.Tensor):
        z = self.net(features)
        if self.kind == "logistic":
            z = torch.cat([torch.zeros_like(z), z], dim=1)
        return z, None


def build_model(settings, info, num_cwe: int = 0) -> Stacker:
    if num_cwe:
        raise ConfigError("model.cwe_head is not available for the fusion track (it stacks binary logits)")
    if not info.num_features:
        raise ConfigError("the fusion track trains on base-model features: list model.fusion.bases")
    return Stacker(info.num_features, settings.stacker, settings.hidden)


def make_loader(split, *, batch_size: int, sampler=None, generator=None, num_workers: int = 0,
                prefetch_factor=None, persistent_workers: bool = False, drop_last: bool = False,
                pad_to_multiple_of: int = 8) -> DataLoader:
    return DataLoader(split, batch_size=batch_size, sampler=sampler, shuffle=False,
                      **loader_options(num_workers=num_workers, prefetch_factor=prefetch_factor,
                                       persistent_workers=persistent_workers, drop_last=drop_last,
                                       generator=generator))


def forward(model, batch: dict, device):
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return output(model(b["features"]), b["label"], b["sample_id"], weight=b.get("weight"))


# ------------------------------------------------------------------ features from fold runs


def base_config(cfg, base, fold: int):
    """A base's fold-run config: its preset and overrides, with the fusion run's data (so the
    same records, splits and folds; the base keeps its own tokenizer), seed, storage and device."""
    from streamguard import config as cfgmod

    own = cfgmod.load(base.preset, [*base.overrides, *cfg.model.fusion.base_overrides])
    merged = own.to_dict()
    merged["data"] = {**cfg.data.model_dump(mode="json"), "tokenizer": own.data.tokenizer, "holdout_fold": fold}
    merged["run"] = {**cfg.run.model_dump(mode="json"), "name": fold_run_name(cfg.run.name, base.name, fold)}
    merged["storage"] = cfg.storage.model_dump(mode="json")
    merged["train"] = {**merged["train"], "device": cfg.train.device}
    return cfgmod.Config.from_dict(merged)


def fold_run_name(run: str, base: str, fold: int) -> str:
    return f"{run}-{base}-fold{fold}"[:63]


def _train_fold(cfg, base, fold: int, rt) -> str:
    """Train (or resume, or find finished) one base's fold run; returns its run URI."""
    from streamguard.rundir import RunDir
    from streamguard.runtime import LocalRuntime
    from streamguard.train.loop import train

    bcfg = base_config(cfg, base, fold)
    run = RunDir(bcfg.run.storage_path, bcfg.run.name, **bcfg.storage.model_dump())
    if run.storage.exists(FOLD_PREDICTIONS):
        log.info("fusion: %s fold %d already trained (%s)", base.name, fold, run.uri)
        return run.uri
    if rt.world_size > 1:
        raise ConfigError("fusion trains its base runs in one process: run it without torchrun/--ray, or train the "
                          "fold runs first and list them (model.fusion.bases[].runs)")
    log.info("fusion: training base %s on folds != %d (%s)", base.name, fold, run.uri)
    run.write_text("config.yaml", bcfg.to_yaml())
    outer = signal.getsignal(signal.SIGTERM)
    inner = LocalRuntime(run.checkpoints(keep_last=bcfg.checkpoint.keep_last, keep_best=bcfg.checkpoint.keep_best),
                         device=bcfg.train.device)
    try:
        train(bcfg, inner, run)
    finally:
        inner.close()
        signal.signal(signal.SIGTERM, outer)
    return run.uri


def _read_fold_run(uri: str) -> dict:
    from streamguard.evaluation.evaluate_run import _split_uri
    from streamguard.rundir import RunDir

    try:
        return json.loads(RunDir(*_split_uri(uri)).storage.read_bytes(FOLD_PREDICTIONS))
    except (StorageError, ValueError) as exc:
        raise DataError(f"{uri} has no readable {FOLD_PREDICTIONS} ({exc}): a fusion base run must be trained with "
                        "data.holdout_fold=<its fold>") from None


def assemble(train_ids: np.ndarray, train_folds: np.ndarray, runs: dict[str, list[dict]]) -> np.ndarray:
    """[N, n_bases] out-of-fold margins of the training samples. Raises DataError unless each
    sample's score comes from the fold run that held it out and never trained on it."""
    features = np.zeros((len(train_ids), len(runs)), np.float32)
    for b, (name, per_fold) in enumerate(runs.items()):
        for k, fp in enumerate(per_fold):
            if fp["fold"] != k:
                raise DataError(f"base {name}: the run for fold {k} held out fold {fp['fold']}")
            rows = np.flatnonzero(train_folds == k)
            trained = set(fp["train_sample_ids"])
            leaked = [int(i) for i in train_ids[rows] if int(i) in trained]
            if leaked:
                raise DataError(f"base {name} fold {k}: {len(leaked)} held-out sample(s) were in that run's training "
                                f"data (e.g. {leaked[:3]}): the fold runs do not match this data's folds")
            scored = dict(zip(fp["holdout"]["sample_id"], fp["holdout"]["margin"]))
            missing = [int(i) for i in train_ids[rows] if int(i) not in scored]
            if missing:
                raise DataError(f"base {name} fold {k}: {len(missing)} sample(s) of the fold have no out-of-fold "
                                f"score (e.g. {missing[:3]}): the fold runs were made from other data")
            features[rows, b] = [scored[int(i)] for i in train_ids[rows]]
    return features


def _average(split, runs: dict[str, list[dict]], which: str) -> np.ndarray:
    features = np.zeros((len(split), len(runs)), np.float32)
    for b, (name, per_fold) in enumerate(runs.items()):
        margins = []
        for fp in per_fold:
            part = fp[which]
            if list(part["sample_id"]) != [int(i) for i in split.idx]:
                raise DataError(f"base {name}: the {which} split of fold run {fp['fold']} is not this run's {which} split")
            margins.append(part["margin"])
        features[:, b] = np.mean(np.asarray(margins, np.float64), axis=0)
    return features


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


def _summary(labels, probs, threshold=None) -> dict:
    from streamguard.train.evaluate import compute_metrics

    m = compute_metrics(labels, probs, threshold=threshold)
    return {k: m[k] for k in ("roc_auc", "f1_at_best_threshold", "best_threshold_by_f1", "accuracy_at_0_5",
                              "f1_at_0_5", "f1_at_external_threshold", "accuracy_at_external_threshold")}


def baseline(settings, bases: list[str], oof: np.ndarray, y_train, valid: np.ndarray, y_valid,
             test: np.ndarray | None, y_test) -> dict:
    """Per-base scores and the weighted average of base probabilities (weights: uniform, or
    out-of-fold ROC-AUC above 0.5), the threshold picked on validation."""
    from streamguard.train.evaluate import compute_metrics

    aucs = [compute_metrics(y_train, _sigmoid(oof[:, b]))["roc_auc"] or 0.5 for b in range(len(bases))]
    if settings.baseline == "uniform":
        w = np.ones(len(bases))
    else:
        w = np.maximum(np.asarray(aucs) - 0.5, 1e-6)
    w = w / w.sum()
    out = {"bases": {}, "weights": dict(zip(bases, w.round(6).tolist())), "weighting": settings.baseline}
    for b, name in enumerate(bases):
        out["bases"][name] = {"oof_roc_auc": aucs[b], "valid": _summary(y_valid, _sigmoid(valid[:, b]))}
    avg_valid = _sigmoid(valid) @ w
    val = _summary(y_valid, avg_valid)
    out["weighted_average"] = {"valid": val}
    if test is not None and len(test):
        avg_test = _sigmoid(test) @ w
        out["weighted_average"]["test"] = _summary(y_test, avg_test, threshold=val["best_threshold_by_f1"])
        for b, name in enumerate(bases):
            out["bases"][name]["test"] = _summary(y_test, _sigmoid(test[:, b]))
    return out


def load_data(cfg, rt):
    """Train or find every base's fold runs, then build the stacking splits (see module doc)."""
    from streamguard.data.dataset import DataInfo, Splits, load_splits
    from streamguard.rundir import RunDir

    settings = cfg.model.fusion
    if not settings.bases:
        raise ConfigError("model.fusion.bases is empty: list the base models to stack (preset or runs)")
    if cfg.data.holdout_fold is not None:
        raise ConfigError("data.holdout_fold is for base runs; the fusion run itself uses every fold")
    data = load_splits(cfg.data, seed=cfg.run.seed, storage_options=cfg.storage.model_dump())
    k = cfg.data.folds
    uris: dict[str, list[str]] = {}
    for base in settings.bases:
        uris[base.name] = ([base.runs.format(fold=f) for f in range(k)] if base.runs else
                           [_train_fold(cfg, base, f, rt) for f in range(k)])
    runs = {name: [_read_fold_run(u) for u in us] for name, us in uris.items()}
    tr, va, te = data.train, data.valid, data.test
    oof = assemble(tr.idx, tr.fold, runs)
    valid = _average(va, runs, "valid")
    test = _average(te, runs, "test") if len(te) else np.zeros((0, len(runs)), np.float32)
    names = list(runs)
    report = baseline(settings, names, oof, tr.target, valid, va.target, test, te.target)
    report["runs"] = uris
    if rt.rank == 0:
        run = RunDir(cfg.run.storage_path, cfg.run.name, **cfg.storage.model_dump())
        run.write_json("oof.json", {"bases": names, "runs": uris, "sample_id": tr.idx.tolist(),
                                    "fold": tr.fold.tolist(), "label": tr.target.tolist(),
                                    "margin": {n: oof[:, b].tolist() for b, n in enumerate(names)}})
    log.info("fusion: %d bases x %d folds; weighted-average baseline valid F1 %.3f", len(names), k,
             report["weighted_average"]["valid"]["f1_at_best_threshold"])
    info = DataInfo(num_node_types=0, token_buckets=0, counts=data.info.counts, skipped=data.info.skipped,
                    tiers=data.info.tiers, sources=data.info.sources, prepared=data.info.prepared,
                    num_features=len(names), extra={"fusion": report})
    return Splits(FeatureSplit(oof, tr.target, tr.idx, tr.fold, "train"),
                  FeatureSplit(valid, va.target, va.idx, va.fold, "valid"),
                  FeatureSplit(test, te.target, te.idx, te.fold, "test"), info)


TRACK = TrackSpec(name="fusion", config_field="fusion", build_model=build_model, make_loader=make_loader,
                  forward=forward, load_data=load_data)
