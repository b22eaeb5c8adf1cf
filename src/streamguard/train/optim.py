"""AdamW and the learning-rate schedules, from plain arguments."""

from __future__ import annotations

import math

import torch


def build_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # No weight decay on biases, norms and embeddings' 1-D params: the usual AdamW recipe.
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def build_scheduler(optimizer, *, schedule: str, warmup_steps: int, total_steps: int):
    """Per-step LambdaLR for constant/linear/cosine (with linear warm-up); `plateau` is
    stepped once per epoch with the validation F1 (see `steps_per_batch`)."""
    if schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=1)
    total = max(1, total_steps)

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def steps_per_batch(scheduler) -> bool:
    return not isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
