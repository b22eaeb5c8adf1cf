"""Track registry: a track is a model family the one training loop can train.

Adding a track = one file in `tracks/` that defines `TRACK = TrackSpec(...)`, one line in
`_TRACK_MODULES`, and its settings section in `config.ModelConfig`. The loop, checkpoints,
metrics and the Ray wiring do not change. Names are listed without importing torch, so
config validation stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from streamguard.errors import ConfigError

_TRACK_MODULES = {
    "gnn": "streamguard.tracks.gnn",
}


@dataclass(frozen=True)
class TrackSpec:
    name: str
    config_field: str
    """Section under `model.` holding this track's settings (e.g. `gnn` -> `model.gnn`)."""
    build_model: Callable[..., Any]
    """(track settings section, DataInfo) -> torch.nn.Module returning logits [B, 2]."""
    make_loader: Callable[..., Any]
    """(dataset, *, batch_size, sampler, num_workers, generator) -> iterable of batches (the collate lives here)."""
    forward: Callable[..., Any]
    """(model, batch, device) -> (logits [B, 2], labels [B], sample_ids [B])."""


def known_tracks() -> list[str]:
    return sorted(_TRACK_MODULES)


def get_track(name: str) -> TrackSpec:
    if name not in _TRACK_MODULES:
        raise ConfigError(f"unknown track {name!r}; known tracks: {', '.join(known_tracks())}")
    return importlib.import_module(_TRACK_MODULES[name]).TRACK
