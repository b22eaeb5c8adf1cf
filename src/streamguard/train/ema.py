"""Exponential moving average of the weights.

The average (float32 copies of every floating-point tensor of the state dict; integer
buffers are copied) is updated after each optimizer step, with the usual warm-up
`decay_t = min(decay, (1 + t) / (10 + t))` so early averages are not dominated by the
random initialisation. It is what validation, the best checkpoint and scoring use, and it
is checkpointed beside the raw weights (`ema.safetensors`), so a resumed run continues the
same average. Every DDP rank holds identical weights, hence an identical average.
"""

from __future__ import annotations

import contextlib

import torch


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


class EMA:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
                       for k, v in _unwrap(model).state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in _unwrap(model).state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.lerp_(v.detach().float(), 1.0 - d)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The average as it would be loaded into the model (the model's dtypes), plus the update count."""
        return {**self.shadow, "__ema_updates__": torch.tensor(self.updates, dtype=torch.int64)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.updates = int(state.get("__ema_updates__", torch.tensor(0)).item())
        for k, s in self.shadow.items():
            s.copy_(state[k])

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """Swap the average into the model for the block (validation), then restore."""
        inner = _unwrap(model)
        backup = {k: v.detach().clone() for k, v in inner.state_dict().items()}
        inner.load_state_dict({k: v.to(backup[k].dtype) for k, v in self.shadow.items()})
        try:
            yield model
        finally:
            inner.load_state_dict(backup)

