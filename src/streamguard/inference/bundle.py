"""Inference bundles: `streamguard export RUN_DIR --out DIR` and what `predict` loads.

A bundle is a directory that scores functions without the run, its checkpoints or its
prepared data:

    bundle.json         track, decision threshold (picked on validation), preprocessing
                        version and settings, what the model builder needs to know about
                        the data (node-type and token-bucket sizes, tokenizer ids, CWE
                        labels), provenance of the run and checkpoint, test metrics
    config.yaml         the run's resolved config
    model.safetensors   the weights of the run's best checkpoint (its EMA average when it
                        has one: the weights the run was scored with)
    tokenizer.json      the tokenizer that made the token windows (when the data had them)
    backbone/           transformer track: the backbone's config, weights and tokenizer
                        (`save_pretrained`), so no hub or cache is needed
    MANIFEST.json       sha256 and size of every file above, written last

Loading verifies every file against the manifest first (a clear error names the file
that is missing or altered), checks the preprocessing version against the installed code,
then builds the model through the track's own `TrackSpec.build_model` and loads the
weights strictly. Nothing is unpickled: JSON, YAML and safetensors only.

Scoring goes through the same code as training data: `data.process.process_record` makes
the graph and token window of each function with the bundle's settings, `PreparedSplit`
holds them, and the track's `make_loader` + `forward` score them, so an exported bundle
gives the run's probabilities on the run's samples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from streamguard.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    StorageError,
    StreamGuardError,
)
from streamguard.storage import file_entry, file_problem

log = logging.getLogger(__name__)

FORMAT = 1
KIND = "streamguard-inference-bundle"
BUNDLE, CONFIG, WEIGHTS, TOKENIZER, BACKBONE, MANIFEST = (
    "bundle.json", "config.yaml", "model.safetensors", "tokenizer.json", "backbone", "MANIFEST.json")


class BundleError(StreamGuardError):
    """A bundle that is incomplete, altered, or made for other code."""


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(root: Path) -> dict:
    manifest = {"format": FORMAT, "kind": KIND,
                "files": {p.relative_to(root).as_posix(): file_entry(p) for p in _files(root)}}
    tmp = root / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    tmp.replace(root / MANIFEST)
    return manifest


def verify_bundle(root: str | Path) -> dict:
    """The manifest, once every file it lists is present with its size and sha256."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: no such bundle directory; make one with `streamguard export RUN_DIR --out DIR`")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{root}: no {MANIFEST}; not an inference bundle (or an incomplete export)") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root}/{MANIFEST} is unreadable: {exc}") from None
    files = manifest.get("files")
    if manifest.get("kind") != KIND or not isinstance(files, dict) or BUNDLE not in files or WEIGHTS not in files:
        raise BundleError(f"{root}/{MANIFEST} is not a StreamGuard inference bundle manifest")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{root}: bundle format {manifest.get('format')}, this streamguard reads format {FORMAT}")
    if (problem := file_problem(root, files)) is not None:
        raise BundleError(f"{root}: {problem}; re-export the bundle")
    return manifest


# --------------------------------------------------------------------------- export


def _data_info_dict(run_info: dict) -> dict:
    """What model builders read from DataInfo, without local paths or counts."""
    from streamguard.data.dataset import DataInfo

    data = run_info.get("data") or {}
    keep = {f.name for f in fields(DataInfo)} - {"counts", "skipped", "tiers", "sources", "prepared", "extra"}
    return {k: v for k, v in data.items() if k in keep}


def _read_run(run_dir: str):
    from streamguard.config import Config
    from streamguard.evaluation.ensemble import split_uri
    from streamguard.rundir import RunDir

    run = RunDir(*split_uri(run_dir))
    try:
        cfg = Config.from_dict(yaml.safe_load(run.storage.read_bytes(CONFIG)))
    except StorageError:
        raise StorageError(f"{run_dir} is not a StreamGuard run directory (no config.yaml); pass the directory "
                           "`streamguard train` printed") from None
    out = {}
    for name in ("run_info.json", "metrics.json"):
        try:
            out[name] = json.loads(run.storage.read_bytes(name))
        except StorageError:
            raise DataError(f"{run_dir} has no {name}: the run has not finished; export a finished run (re-running "
                            "its `streamguard train` command completes or re-scores it)") from None
        except ValueError as exc:
            raise DataError(f"{run_dir}/{name} is not valid JSON: {exc}") from None
    return run, cfg, out["run_info.json"], out["metrics.json"]


def _check_exportable(cfg, track, info) -> None:
    if track.load_data is not None:
        raise ConfigError(f"the {track.name} track scores features derived from other runs' predictions, not "
                          "source code; export its base runs instead")
    section = getattr(cfg.model, track.config_field)
    encoders = [getattr(s, "encoder", "none") for s in (section, getattr(section, "gnn", None)) if s is not None]
    if any(e not in (None, "none") for e in encoders):
        raise ConfigError("this run reads transformer encoder features added by `streamguard data augment` "
                          "(model.gnn.encoder); bundles cannot compute them yet: export a run with encoder=none")


def _prepared(info_data: dict) -> tuple[str | None, str]:
    """(preprocessing version of the run's prepared data when its manifest is readable, a
    hash identifying that data: the manifest's cache key, else the sources' sha256)."""
    from streamguard.data.shards import read_manifest
    from streamguard.storage import open_storage

    sources = hashlib.sha256(json.dumps(info_data.get("sources") or {}, sort_keys=True).encode()).hexdigest()
    prepared = info_data.get("prepared")
    if not prepared:
        return None, sources
    try:
        manifest = read_manifest(open_storage(prepared))
    except StreamGuardError:
        return None, sources
    return str(manifest.get("preprocess_version")), str(manifest.get("cache_key") or sources)


def export_bundle(run_dir: str, out: str | Path, *, force: bool = False) -> dict:
    """Write the inference bundle of a finished run into `out` (a local directory)."""
    from safetensors.torch import save_file

    from streamguard import checkpoint
    from streamguard.data.dataset import DataInfo
    from streamguard.data.process import PREPROCESS_VERSION
    from streamguard.data.tokens import tokenizer_fingerprint
    from streamguard.provenance import versions
    from streamguard.registry import get_track
    from streamguard.tracks.common import build

    out = Path(out)
    if str(out).startswith("s3://"):
        raise ConfigError("--out is a local directory; upload the bundle directory afterwards (or use --to s3://...)")
    if out.exists() and any(out.iterdir()) and not force:
        raise ConfigError(f"{out} exists and is not empty; pick a new directory or pass --force to replace it")
    run, cfg, run_info, metrics = _read_run(run_dir)
    track = get_track(cfg.model.track)
    data_info = _data_info_dict(run_info)
    info = DataInfo(**{**data_info, "encoder": data_info.get("encoder")})
    _check_exportable(cfg, track, info)
    threshold = metrics.get("external_threshold")
    if threshold is None:
        raise DataError(f"{run_dir}/metrics.json has no external_threshold (the threshold picked on validation)")
    version, data_hash = _prepared(run_info.get("data") or {})
    if version is not None and version != PREPROCESS_VERSION:
        raise DataError(f"{run_dir} was trained on data prepared with preprocessing version {version}, this "
                        f"streamguard prepares version {PREPROCESS_VERSION}: a bundle would build different "
                        "features; export with the streamguard version that trained it")

    model = build(track, cfg.model, info)
    best = run.checkpoints(keep_last=cfg.checkpoint.keep_last, keep_best=cfg.checkpoint.keep_best).best_valid()
    if best is None:
        raise CheckpointError(f"{run_dir}: no valid checkpoint to export")
    weights_kind = checkpoint.load_for_scoring(best, model=model)
    ckpt_manifest = checkpoint.verify(best)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))  # same filesystem: the final rename is atomic
    try:
        section = getattr(cfg.model, track.config_field)
        backbone = None
        if hasattr(section, "backbone") and hasattr(model, "backbone"):
            backbone = _export_backbone(model, section.backbone, info, staging / BACKBONE)
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
                 if not (backbone and k.startswith(backbone["prefix"]))}  # those are in backbone/, once
        save_file(state, staging / WEIGHTS, metadata={"format": KIND, "track": track.name})
        (staging / CONFIG).write_text(cfg.to_yaml())
        tok_meta = None
        if info.tokenizer:
            tok_meta = _export_tokenizer(info.tokenizer, staging / TOKENIZER, tokenizer_fingerprint)
        summary_keys = ("split", "n_samples", "f1_at_external_threshold", "accuracy_at_external_threshold",
                        "roc_auc", "pr_auc", "f1_at_0_5")
        bundle = {
            "format": FORMAT, "kind": KIND, "track": track.name, "config_field": track.config_field,
            "threshold": float(threshold), "threshold_from": "validation (best F1 over 0.30..0.70)",
            "preprocess_version": PREPROCESS_VERSION,
            "process": _process_settings(cfg),
            "data_info": data_info, "tokenizer": tok_meta, "backbone": backbone,
            "eval_batch_size": cfg.train.eval_batch_size,
            "run": {"uri": run.uri, "name": cfg.run.name, "seed": cfg.run.seed, "config_hash": cfg.hash(),
                    "checkpoint": best.name, "global_step": ckpt_manifest.get("global_step"),
                    "checkpoint_sha256": ckpt_manifest["files"][checkpoint.MODEL]["sha256"], "weights": weights_kind,
                    "git_commit": run_info.get("git_commit"), "data_manifest_hash": data_hash,
                    "data_sources": (run_info.get("data") or {}).get("sources")},
            "metrics": {k: metrics.get(k) for k in summary_keys},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions(),
        }
        (staging / BUNDLE).write_text(json.dumps(bundle, indent=1, sort_keys=True))
        write_manifest(staging)
        for p in staging.rglob("*"):  # mkdtemp/safetensors make owner-only modes; bundles are shared
            p.chmod(0o755 if p.is_dir() else 0o644)
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return bundle


def _process_settings(cfg) -> dict:
    from streamguard.data.prepare import PrepareSettings

    return asdict(PrepareSettings.from_data_config(cfg.data, cfg.run.seed).process)


def _export_tokenizer(meta: dict, path: Path, fingerprint) -> dict:
    from streamguard.data.tokens import load_tokenizer

    tok = load_tokenizer(meta["name"])
    if meta.get("sha256") and fingerprint(tok) != meta["sha256"]:
        raise DataError(f"tokenizer {meta['name']!r} has changed since the run prepared its data (sha256 differs); "
                        "the bundle would make other token ids")
    path.write_text(tok.backend.to_str())
    return {"name": meta["name"], "sha256": fingerprint(tok), "cls_id": tok.cls_id, "sep_id": tok.sep_id,
            "pad_id": tok.pad_id, "vocab_size": tok.vocab_size, "max_tokens": meta.get("max_tokens")}


def _export_backbone(model, name: str, info, directory: Path) -> dict:
    """The transformer backbone as a local `save_pretrained` directory (config, trained
    weights, tokenizer files), so building the model needs no hub and no cache."""
    from streamguard.pretrained import resolve

    directory.mkdir(parents=True)
    model.backbone.save_pretrained(directory, safe_serialization=True)
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(resolve(name), use_fast=True, local_files_only=True).save_pretrained(directory)
    except Exception as exc:  # noqa: BLE001 -- transformers raises many types for missing files
        raise ConfigError(f"backbone {name!r}: its tokenizer cannot be saved into the bundle ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    from streamguard.tracks.transformer import check_tokenizer

    check_tokenizer(str(directory), info)  # the saved copy makes the same token ids
    return {"name": name, "directory": BACKBONE, "prefix": "backbone.",
            "note": "the trained backbone weights live in backbone/ (not repeated in model.safetensors)"}


# --------------------------------------------------------------------------- load


@dataclass
class Bundle:
    root: Path
    meta: dict
    cfg: object
    track: object
    model: object
    tokenizer: object | None
    device: object
    manifest: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return float(self.meta["threshold"])

    @property
    def cwe_labels(self) -> list[str]:
        return list(self.meta["data_info"].get("cwe_labels") or [])

    def process_settings(self):
        from streamguard.data.process import ProcessSettings

        return ProcessSettings(**self.meta["process"])

    def score_records(self, records: list[dict], *, batch_size: int | None = None, progress: bool = False) -> dict:
        """Score records ({idx, func, lang}) as training would have seen them. Returns
        {idx: {"prob", "tier", "truncated_nodes", "truncated_source", "cwe"}} for scored records
        and {idx: {"skipped": reason}} for records processing refused (empty, oversize, failed)."""
        from streamguard.data.process import process_record, rows_to_table
        from streamguard.data.shards import SCHEMA, TRAIN_COLUMNS, PreparedSplit
        from streamguard.train.step import predict_outputs

        settings = self.process_settings()
        rows, out = [], {}
        from tqdm import tqdm

        for record in tqdm(records, desc="parsing", unit="fn", disable=not progress, leave=False):
            full = {"target": 0, "cwe": "", "weight": None, "project": "", "group": "", "source": "predict",
                    "commit_id": "", "date": "", "split": "predict", "fold": -1, **record}
            try:
                row, reason = process_record(full, settings, self.tokenizer)
            except Exception as exc:  # noqa: BLE001 -- as process_chunk: one bad function never stops the rest
                row, reason = None, f"failed:{type(exc).__name__}"
            if row is None:
                out[record["idx"]] = {"skipped": reason}
            else:
                rows.append(row)
        if not rows:
            return out
        table = rows_to_table(rows, SCHEMA).select(TRAIN_COLUMNS)
        pad_id = (self.meta.get("tokenizer") or {}).get("pad_id", 0)
        split = PreparedSplit(table, "predict", pad_id)
        loader = self.track.make_loader(split, batch_size=batch_size or self.meta.get("eval_batch_size") or 64)
        scored = predict_outputs(self.model, loader, forward=self.track.forward, device=self.device, dtype=None)
        info = {int(r["idx"]): r for r in rows}
        labels = self.cwe_labels
        for i, (idx, prob) in enumerate(zip(scored["ids"].tolist(), scored["probs"].tolist())):
            r = info[int(idx)]
            entry = {"prob": float(prob), "tier": r["tier"], "truncated_nodes": bool(r["truncated_nodes"]),
                     "truncated_source": bool(r["truncated_source"])}
            if scored["cwe_probs"] is not None and labels:
                top = sorted(zip(labels, scored["cwe_probs"][i].tolist()), key=lambda kv: -kv[1])[:3]
                entry["cwe"] = [{"cwe": c, "prob": float(p)} for c, p in top]
            out[int(idx)] = entry
        return out


def _tokenizer(root: Path, meta: dict | None):
    if not meta:
        return None
    from tokenizers import Tokenizer

    from streamguard.data.tokens import TokenizerHandle, tokenizer_fingerprint

    try:
        backend = Tokenizer.from_file(str(root / TOKENIZER))
    except Exception as exc:  # noqa: BLE001 -- the tokenizers library raises a plain Exception
        raise BundleError(f"{root}/{TOKENIZER} cannot be read as a tokenizer: {exc}") from None
    tok = TokenizerHandle(backend, meta["name"], cls_id=meta["cls_id"], sep_id=meta["sep_id"], pad_id=meta["pad_id"],
                          vocab_size=meta.get("vocab_size"))
    if tokenizer_fingerprint(tok) != meta["sha256"]:
        raise BundleError(f"{root}/{TOKENIZER} does not match the tokenizer the run used (fingerprint differs)")
    return tok


def load_bundle(path: str | Path, *, device: str = "cpu") -> Bundle:
    """Verify and load a bundle directory; the model is in eval mode on `device`."""
    from safetensors.torch import load_file

    from streamguard.config import Config
    from streamguard.data.dataset import DataInfo
    from streamguard.data.process import PREPROCESS_VERSION
    from streamguard.registry import get_track
    from streamguard.runtime import pick_device
    from streamguard.tracks.common import build

    root = Path(path)
    manifest = verify_bundle(root)
    meta = json.loads((root / BUNDLE).read_text())
    if meta.get("preprocess_version") != PREPROCESS_VERSION:
        raise BundleError(f"{root} was exported with preprocessing version {meta.get('preprocess_version')}, this "
                          f"streamguard uses version {PREPROCESS_VERSION}: its features would not match the model; "
                          "use the streamguard version that exported it")
    raw = yaml.safe_load((root / CONFIG).read_text())
    if meta.get("backbone"):
        section = raw.setdefault("model", {}).setdefault(meta["config_field"], {})
        section["backbone"] = str((root / meta["backbone"]["directory"]).resolve())
    cfg = Config.from_dict(raw)
    track = get_track(meta["track"])
    info = DataInfo(**meta["data_info"])
    model = build(track, cfg.model, info)
    weights = load_file(root / WEIGHTS)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    prefix = (meta.get("backbone") or {}).get("prefix")
    if prefix:  # the backbone's trained weights came from backbone/ when the model was built
        missing = [k for k in missing if not k.startswith(prefix)]
    if missing or unexpected:
        raise BundleError(f"{root}/{WEIGHTS} does not fit the {track.name} model built from its config (missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]})")
    dev = pick_device(device)
    model.to(dev).eval()
    return Bundle(root=root, meta=meta, cfg=cfg, track=track, model=model, tokenizer=_tokenizer(root, meta.get("tokenizer")),
                  device=dev, manifest=manifest)
