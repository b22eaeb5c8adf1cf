"""One optimizer step and batched prediction. Track-agnostic: the track's `forward` turns a
batch into logits."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision only on CUDA; `auto` prefers bf16 (no loss scaling needed)."""
    if device.type != "cuda" or setting == "off":
        return None
    if setting == "fp16" or (setting == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def train_step(model, batch, *, forward, optimizer, scaler, device, dtype, grad_clip: float) -> torch.Tensor:
    """Forward, backward, clip, step. Returns the loss as a tensor (no host sync here)."""
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        logits, labels, _ = forward(model, batch, device)
        loss = F.cross_entropy(logits.float(), labels)
    scaler.scale(loss).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return loss.detach()


@torch.no_grad()
def predict(model, loader, *, forward, device, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(labels, P(vulnerable), sample ids, mean loss) over a whole loader."""
    was_training = model.training
    model.eval()
    labels, probs, ids, loss_sum, n = [], [], [], 0.0, 0
    for batch in loader:
        with autocast(device, dtype):
            logits, y, sid = forward(model, batch, device)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        n += y.numel()
        probs.append(torch.softmax(logits, dim=1)[:, 1].cpu())
        labels.append(y.cpu())
        ids.append(sid.cpu())
    model.train(was_training)
    if n == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0, int), float("nan")
    return (torch.cat(labels).numpy(), torch.cat(probs).numpy(), torch.cat(ids).numpy(), loss_sum / n)
