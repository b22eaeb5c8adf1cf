"""DataLoader settings from the train section, optimizer steps per epoch, and grouping of
micro-batches into optimizer steps (gradient accumulation). Plain functions the loop calls."""

from __future__ import annotations

import math
from itertools import islice


def train_loader_options(t) -> dict:
    """`make_loader` keyword arguments for the training loader, from the train section."""
    return {"num_workers": t.num_workers, "prefetch_factor": t.prefetch_factor,
            "persistent_workers": t.persistent_workers, "drop_last": t.drop_last,
            "pad_to_multiple_of": t.pad_to_multiple_of}


def eval_loader_options(t) -> dict:
    """The same for validation and test loaders: every sample is scored (no drop_last)."""
    return {**train_loader_options(t), "drop_last": False}


def steps_per_epoch(n: int, *, batch_size: int, world_size: int, grad_accum_steps: int = 1,
                    drop_last: bool = False) -> int:
    """Optimizer steps in one epoch on each rank (the DistributedSampler pads ranks to
    ceil(n / world_size) samples; the last accumulation group may be short)."""
    per_rank = math.ceil(n / world_size)
    micro = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    return math.ceil(micro / grad_accum_steps)


def accumulate(loader, k: int):
    """Micro-batches in groups of `k` (one optimizer step each); the epoch's last group may be shorter."""
    it = iter(loader)
    while group := list(islice(it, k)):
        yield group
