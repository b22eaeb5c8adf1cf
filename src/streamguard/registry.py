"""Track registry: a track is a model family the one training loop can train.

Adding a track = one file in `tracks/` that defines `TRACK = TrackSpec(...)`, one line in
`_TRACK_MODULES`, and its settings section in `config.ModelConfig`. The loop, checkpoints,
metrics and the Ray wiring do not change. Names are listed without importing torch, so
config validation stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from streamguard.errors import ConfigError

_TRACK_MODULES = {
    "gnn": "streamguard.tracks.gnn",
    "transformer": "streamguard.tracks.transformer",
    "hybrid": "streamguard.tracks.hybrid",
    "fusion": "streamguard.tracks.fusion",
}


class Output(NamedTuple):
    """What a track's `forward` returns; the loop's step and prediction read nothing else.

    The batch size is `labels.numel()` (no host sync), whatever the batch type."""

    logits: Any
    """[B, 2] logits for (safe, vulnerable)."""
    labels: Any
    """[B] 0/1 labels."""
    sample_ids: Any
    """[B] sample ids (the shards' `idx`)."""
    weight: Any = None
    """[B] per-sample loss weights, or None (plain mean)."""
    cwe_logits: Any = None
    """[B, C] multi-label CWE logits when the model has a CWE head, else None."""
    cwe_labels: Any = None
    """[B, C] multi-hot CWE targets when the data carries them, else None."""


@dataclass(frozen=True)
class TrackSpec:
    name: str
    config_field: str
    """Section under `model.` holding this track's settings (e.g. `gnn` -> `model.gnn`)."""
    build_model: Callable[..., Any]
    """(track settings section, DataInfo, **heads) -> torch.nn.Module; `heads` are plain
    arguments shared by every track (`num_cwe`: size of the CWE head, 0 for none)."""
    make_loader: Callable[..., Any]
    """(split, *, batch_size, sampler=None, generator=None, num_workers=0, prefetch_factor=None,
    persistent_workers=False, drop_last=False, pad_to_multiple_of=8) -> iterable of batches.
    `split` is a `data.shards.PreparedSplit` (or the track's own derived split); the collate
    lives here."""
    forward: Callable[..., Any]
    """(model, batch, device) -> `Output`."""
    load_data: Callable[..., Any] | None = None
    """Tracks that train on derived data rather than prepared shards (fusion: out-of-fold
    logits of base runs): (Config, Runtime) -> `data.dataset.Splits`. None: the shards."""


def known_tracks() -> list[str]:
    return sorted(_TRACK_MODULES)


def get_track(name: str) -> TrackSpec:
    if name not in _TRACK_MODULES:
        raise ConfigError(f"unknown track {name!r}; known tracks: {', '.join(known_tracks())}")
    return importlib.import_module(_TRACK_MODULES[name]).TRACK
