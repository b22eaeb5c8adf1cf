"""One optimizer step and batched prediction. Track-agnostic: the track's `forward` turns a
batch into an `Output` (logits, labels, ids, and optionally per-sample weights and CWE
logits/targets); the loss is computed here, the same way for every track."""

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


def compute_loss(out, *, binary_weight: float = 1.0, cwe_weight: float = 0.0) -> torch.Tensor:
    """Cross-entropy on the binary logits (weighted by `out.weight` when the batch carries
    per-sample weights: sum(w * l) / sum(w)), plus `cwe_weight` x the multi-label BCE of the
    CWE head when the model has one. Computed in float32 under AMP."""
    w = None if out.weight is None else out.weight.float()
    per_sample = F.cross_entropy(out.logits.float(), out.labels, reduction="none") * binary_weight
    if cwe_weight and out.cwe_logits is not None and out.cwe_labels is not None:
        bce = F.binary_cross_entropy_with_logits(out.cwe_logits.float(), out.cwe_labels.float(), reduction="none")
        per_sample = per_sample + cwe_weight * bce.mean(dim=1)
    if w is None:
        return per_sample.mean()
    return (per_sample * w).sum() / w.sum().clamp_min(1e-12)


def train_step(model, batch, **kw) -> torch.Tensor:
    """One optimizer step on one batch; returns the loss as a tensor (see `train_group`)."""
    return train_group(model, [batch], **kw)[0]


def train_group(model, batches: list, *, forward, optimizer, scaler, device, dtype, grad_clip: float,
                binary_weight: float = 1.0, cwe_weight: float = 0.0, ema=None) -> tuple[torch.Tensor, int]:
    """One optimizer step over a group of micro-batches (gradient accumulation: the loss of
    each is divided by the group size, so the step sees the mean). Under DDP, gradients are
    all-reduced only in the last micro-batch's backward (`no_sync` on the others). Returns
    (mean loss as a tensor -- no host sync here --, samples seen)."""
    optimizer.zero_grad(set_to_none=True)
    total, seen, k = torch.zeros((), device=device), 0, len(batches)
    for i, batch in enumerate(batches):
        last = i == k - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            with autocast(device, dtype):
                out = forward(model, batch, device)
                loss = compute_loss(out, binary_weight=binary_weight, cwe_weight=cwe_weight)
            scaler.scale(loss / k).backward()
        total += loss.detach()
        seen += out.labels.numel()  # shape metadata: no sync
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    if ema is not None:
        ema.update(model)
    return total / k, seen


@torch.no_grad()
def predict_outputs(model, loader, *, forward, device, dtype) -> dict:
    """Everything prediction yields over a loader: labels, P(vulnerable), sample ids, mean
    loss, the logit margin (logit_vulnerable - logit_safe, what fusion stacks) and, with a
    CWE head, the CWE probabilities and targets."""
    was_training = model.training
    model.eval()
    labels, probs, ids, margins, cwe_p, cwe_y, loss_sum, n = [], [], [], [], [], [], 0.0, 0
    for batch in loader:
        with autocast(device, dtype):
            out = forward(model, batch, device)
        logits = out.logits.float()
        loss_sum += F.cross_entropy(logits, out.labels, reduction="sum").item()
        n += out.labels.numel()
        probs.append(torch.softmax(logits, dim=1)[:, 1].cpu())
        margins.append((logits[:, 1] - logits[:, 0]).cpu())
        labels.append(out.labels.cpu())
        ids.append(out.sample_ids.cpu())
        if out.cwe_logits is not None:
            cwe_p.append(torch.sigmoid(out.cwe_logits.float()).cpu())
            if out.cwe_labels is not None:
                cwe_y.append(out.cwe_labels.cpu())
    model.train(was_training)
    if n == 0:
        return {"labels": np.zeros(0, int), "probs": np.zeros(0), "ids": np.zeros(0, int), "loss": float("nan"),
                "margins": np.zeros(0), "cwe_probs": None, "cwe_labels": None}
    cat = lambda xs: torch.cat(xs).numpy() if xs else None  # noqa: E731
    return {"labels": cat(labels), "probs": cat(probs), "ids": cat(ids), "loss": loss_sum / n,
            "margins": cat(margins), "cwe_probs": cat(cwe_p), "cwe_labels": cat(cwe_y)}


def predict(model, loader, *, forward, device, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(labels, P(vulnerable), sample ids, mean loss) over a whole loader."""
    r = predict_outputs(model, loader, forward=forward, device=device, dtype=dtype)
    return r["labels"], r["probs"], r["ids"], r["loss"]
