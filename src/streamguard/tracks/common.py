"""Pieces every track shares: the classification heads (binary, plus the optional
multi-label CWE head), the `Output` a forward returns, and DataLoader options."""

from __future__ import annotations

import torch
from torch import nn

from streamguard.errors import ConfigError
from streamguard.registry import Output


class Heads(nn.Module):
    """pooled [B, in_dim] -> (logits [B, 2], CWE logits [B, C] or None).

    One hidden layer shared by both heads (in_dim -> hidden -> 2), so the CWE labels shape
    the representation the binary head reads."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, num_cwe: int = 0, activation: str = "relu"):
        super().__init__()
        act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.trunk = nn.Sequential(nn.Linear(in_dim, hidden), act, nn.Dropout(dropout))
        self.binary = nn.Linear(hidden, 2)
        self.cwe = nn.Linear(hidden, num_cwe) if num_cwe else None

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.trunk(pooled)
        return self.binary(h), (self.cwe(h) if self.cwe is not None else None)


def output(heads_out, labels, sample_ids, *, weight=None, cwe=None) -> Output:
    logits, cwe_logits = heads_out
    return Output(logits, labels, sample_ids, weight=weight, cwe_logits=cwe_logits,
                  cwe_labels=cwe if cwe_logits is not None else None)


def build(track, model_section, info):
    """The one way the loop and `streamguard evaluate` build a track's model: its own
    settings section plus the shared head options, as plain arguments."""
    num_cwe = 0
    if model_section.cwe_head:
        num_cwe = len(info.cwe_labels)
        if not num_cwe:
            raise ConfigError("model.cwe_head=true but the training split has no CWE labels on its vulnerable "
                              "functions (Juliet and the synthetic data have them; Devign does not)")
    return track.build_model(getattr(model_section, track.config_field), info, num_cwe=num_cwe)


def loader_options(*, num_workers: int = 0, prefetch_factor: int | None = None, persistent_workers: bool = False,
                   drop_last: bool = False, generator=None) -> dict:
    """torch DataLoader keyword arguments (prefetch/persistence only exist with workers)."""
    kw = {"num_workers": num_workers, "drop_last": drop_last, "generator": generator}
    if num_workers > 0:
        kw["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            kw["prefetch_factor"] = prefetch_factor
    return kw


def attention_pool(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked softmax attention over the sequence: scores [B, L], values [B, L, H], mask [B, L]."""
    scores = scores.float().masked_fill(mask == 0, torch.finfo(torch.float32).min)
    weights = torch.softmax(scores, dim=1).to(values.dtype)
    return torch.einsum("bl,blh->bh", weights, values)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(values.dtype)
    return (values * m).sum(1) / m.sum(1).clamp_min(1.0)
