"""The ONLY owner of the on-disk checkpoint format.

A checkpoint is a directory:
    model.safetensors            weights (no pickle)
    ema.safetensors              the EMA of the weights, when train.ema_decay > 0 (what scoring uses)
    optimizer.pt, scheduler.pt   tensors and primitives only; loaded with weights_only=True
    state.json                   epoch, global step, position in the epoch, RNG states, best metric, config hash
    config.yaml                  the resolved config of the run
    MANIFEST.json                sha256 + size of every file above; written LAST as the commit marker

A checkpoint without a valid manifest does not exist. `CheckpointStore` keeps them under a
`Storage` root (local or S3) as `step_<global step>`, finds the newest one that verifies
(falling back, with a warning, past corrupt or half-written ones) and applies retention.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from streamguard.errors import CheckpointError, StorageError
from streamguard.storage import Storage, file_entry, file_problem

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MODEL, OPTIMIZER, SCHEDULER, STATE, CONFIG, MANIFEST = (
    "model.safetensors", "optimizer.pt", "scheduler.pt", "state.json", "config.yaml", "MANIFEST.json")
EMA = "ema.safetensors"
_NAME = re.compile(r"^step_(\d{9})$")


@dataclass
class TrainState:
    """Where training is. `step_in_epoch` batches of `epoch` are done (mid-epoch resume)."""

    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    epoch_loss_sum: float = 0.0   # running train-loss sum of the current epoch, for mid-epoch resume
    best_metric: float | None = None
    best_step: int | None = None
    epochs_without_improvement: int = 0
    completed: bool = False
    history: list[dict] = field(default_factory=list)
    resumes: list[dict] = field(default_factory=list)  # one row per restart: from_step, lost_steps, time


def checkpoint_name(global_step: int) -> str:
    return f"step_{global_step:09d}"


# ------------------------------------------------------------------ one directory


def save(directory: str | Path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
         state: TrainState, config_yaml: str, config_hash: str, metric: float | None = None, ema=None,
         rng_states: list[dict] | None = None) -> dict:
    """Write a complete checkpoint into `directory`; MANIFEST.json last. `ema`: a
    `train.ema.EMA` whose average is saved beside the weights."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().to("cpu").contiguous() for k, v in _unwrap(model).state_dict().items()}
    save_file(weights, d / MODEL)
    if ema is not None:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in ema.state_dict().items()}, d / EMA)
    if optimizer is not None:
        torch.save(optimizer.state_dict(), d / OPTIMIZER)
    if scheduler is not None:
        torch.save(scheduler.state_dict(), d / SCHEDULER)
    payload = {"format": FORMAT_VERSION, "config_hash": config_hash, "rng": _rng_state(), **asdict(state)}
    if rng_states:  # DDP: each rank's own RNG (dropout draws differ per rank), from rng_state() on every rank
        payload["rng_per_rank"] = rng_states
    (d / STATE).write_text(json.dumps(payload, indent=1))
    (d / CONFIG).write_text(config_yaml)
    files = {p.name: file_entry(p) for p in sorted(d.iterdir()) if p.name != MANIFEST and p.is_file()}
    manifest = {"format": FORMAT_VERSION, "global_step": state.global_step, "epoch": state.epoch,
                "metric": metric, "created": time.time(), "files": files}
    tmp = d / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(d / MANIFEST)
    return manifest


def verify(directory: str | Path) -> dict:
    """Return the manifest if every listed file is present with the right size and sha256."""
    d = Path(directory)
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{d}: no {MANIFEST} (incomplete checkpoint)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{d}: unreadable {MANIFEST}: {exc}") from None
    files = manifest.get("files")
    if manifest.get("format") != FORMAT_VERSION or not isinstance(files, dict) or MODEL not in files:
        raise CheckpointError(f"{d}: {MANIFEST} has an unknown format")
    if (problem := file_problem(d, files)) is not None:
        raise CheckpointError(f"{d}: {problem}")
    return manifest


def load(directory: str | Path, *, model: torch.nn.Module, optimizer=None, scheduler=None,
         config_hash: str | None = None, restore_rng: bool = True, ema=None, rank: int = 0) -> TrainState:
    """Verify, then restore weights (and optimizer, scheduler, EMA, RNG). Returns the TrainState."""
    d = Path(directory)
    verify(d)
    payload = json.loads((d / STATE).read_text())
    if config_hash and payload.get("config_hash") != config_hash:
        log.warning("checkpoint %s was written with a different config (hash %s..., now %s...); "
                    "resuming anyway", d.name, str(payload.get("config_hash"))[:12], config_hash[:12])
    missing, unexpected = _unwrap(model).load_state_dict(load_file(d / MODEL), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{d}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
                              "was it trained with a different model config?")
    if ema is not None:
        if (d / EMA).exists():
            ema.load_state_dict(load_file(d / EMA))
        else:  # turned on for a run that had none: start the average from the weights
            log.warning("checkpoint %s has no EMA weights; the average starts from the restored weights", d.name)
            ema.load_state_dict({**_unwrap(model).state_dict(), "__ema_updates__": torch.tensor(0)})
    if optimizer is not None and (d / OPTIMIZER).exists():
        optimizer.load_state_dict(torch.load(d / OPTIMIZER, map_location="cpu", weights_only=True))
    if scheduler is not None and (d / SCHEDULER).exists():
        scheduler.load_state_dict(torch.load(d / SCHEDULER, map_location="cpu", weights_only=True))
    if restore_rng and "rng" in payload:
        per_rank = payload.get("rng_per_rank") or []
        _set_rng_state(per_rank[rank] if rank < len(per_rank) else payload["rng"])
    fields = TrainState.__dataclass_fields__
    return TrainState(**{k: v for k, v in payload.items() if k in fields})


def load_for_scoring(directory: str | Path, *, model: torch.nn.Module) -> str:
    """Verify, then load the weights to score with: the EMA average when the checkpoint has
    one, else the raw weights. Returns which ("ema" or "model")."""
    d = Path(directory)
    verify(d)
    if not (d / EMA).exists():
        load(d, model=model, restore_rng=False)
        return "model"
    inner = _unwrap(model)
    dtypes = {k: v.dtype for k, v in inner.state_dict().items()}
    weights = {k: v.to(dtypes[k]) for k, v in load_file(d / EMA).items() if k in dtypes}
    missing, unexpected = inner.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{d}: EMA weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return "ema"


# ------------------------------------------------------------------ many, on storage


class CheckpointStore:
    """Checkpoints under one storage root: commit, discover newest valid, retention."""

    def __init__(self, storage: Storage, *, keep_last: int = 2, keep_best: bool = True):
        self.storage, self.keep_last, self.keep_best = storage, keep_last, keep_best

    def commit(self, local_dir: str | Path, name: str) -> str:
        """Copy a saved checkpoint to storage: data files first, the manifest last, so a
        crash mid-upload leaves a directory that discovery ignores."""
        local_dir = Path(local_dir)
        manifest = verify(local_dir)
        for file in manifest["files"]:
            self.storage.upload_file(local_dir / file, f"{name}/{file}")
        self.storage.write_bytes(f"{name}/{MANIFEST}", (local_dir / MANIFEST).read_bytes())
        self.prune(protect=name)
        return f"{self.storage.uri}/{name}"

    def names(self) -> list[str]:
        """Checkpoint directories, oldest first (committed or not)."""
        return sorted(n for n in self.storage.list() if _NAME.match(n))

    def _manifest(self, name: str) -> dict | None:
        try:
            return json.loads(self.storage.read_bytes(f"{name}/{MANIFEST}"))
        except (StorageError, ValueError):
            return None

    def fetch(self, name: str, scratch: str | Path) -> Path:
        """A verified local directory for checkpoint `name` (downloaded if remote)."""
        local = self.storage.local_path(name)
        if local is None:
            local = Path(scratch) / name
            manifest = self._manifest(name)
            if manifest is None:
                raise CheckpointError(f"{self.storage.uri}/{name}: no valid {MANIFEST} (incomplete checkpoint)")
            for file in [*manifest["files"], MANIFEST]:
                self.storage.download_file(f"{name}/{file}", local / file)
        verify(local)
        return local

    def latest_valid(self, scratch: str | Path | None = None) -> Path | None:
        """Newest checkpoint that verifies; older ones are tried when it does not."""
        scratch = scratch or tempfile.mkdtemp(prefix="streamguard-ckpt-")
        for name in reversed(self.names()):
            try:
                return self.fetch(name, scratch)
            except (CheckpointError, StorageError) as exc:
                log.warning("skipping checkpoint %s: %s; trying the previous one", name, exc)
        return None

    def best_valid(self, scratch: str | Path | None = None) -> Path | None:
        """The committed checkpoint with the best metric (falls back to the newest valid)."""
        scratch = scratch or tempfile.mkdtemp(prefix="streamguard-ckpt-")
        scored = [(m["metric"], n) for n in self.names() if (m := self._manifest(n)) and m.get("metric") is not None]
        for _, name in sorted(scored, reverse=True):
            try:
                return self.fetch(name, scratch)
            except (CheckpointError, StorageError) as exc:
                log.warning("skipping checkpoint %s: %s", name, exc)
        return self.latest_valid(scratch)

    def prune(self, protect: str | None = None) -> list[str]:
        """Keep the newest `keep_last` committed checkpoints plus the best one; drop the rest
        and any uncommitted leftovers older than the newest commit (a crashed upload)."""
        names = self.names()
        manifests = {n: self._manifest(n) for n in names}
        committed = [n for n in names if manifests[n] is not None]
        keep = set(committed[-self.keep_last:]) | {protect}
        if self.keep_best:
            scored = [(manifests[n]["metric"], n) for n in committed if manifests[n].get("metric") is not None]
            if scored:
                keep.add(max(scored)[1])
        newest = committed[-1] if committed else None
        drop = [n for n in names if n not in keep and (manifests[n] is not None or (newest and n < newest))]
        for name in drop:
            self.storage.delete(name)
        return drop


# ------------------------------------------------------------------ helpers


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode()


def rng_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) RNG states, JSON-able."""
    return _rng_state()


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], base64.b64encode(np_state[1].tobytes()).decode(), *map(float, np_state[2:])],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.frombuffer(base64.b64decode(keys), dtype=np.uint32), int(pos), int(has_gauss), cached))
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)
                                      for s in state["cuda"]])
