"""`transformer` track: a Hugging Face encoder (CodeBERT family, or any `AutoModel`) over
the prepared token window, with CLS, mean or attention pooling and a head sized to the
backbone (768 -> 384 -> 2 for base models), plus the optional CWE head.

The token ids in the shards must come from the backbone's own tokenizer: the builder
compares the tokenizer fingerprint recorded in the manifest with the backbone's and fails
with the fix (`data.tokenizer=backbone`) on a mismatch. Backbones load offline-first
(`streamguard.pretrained`): a missing one is a one-line error saying how to provide it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.utils.data import DataLoader

from streamguard.errors import ConfigError
from streamguard.registry import TrackSpec
from streamguard.tracks.common import Heads, attention_pool, loader_options, masked_mean, output

log = logging.getLogger(__name__)


class TransformerClassifier(nn.Module):
    def __init__(self, backbone: nn.Module, *, pooling: str, head_hidden: int | None, dropout: float,
                 num_cwe: int = 0):
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.pooling = pooling
        self.score = nn.Linear(hidden, 1) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.heads = Heads(hidden, head_hidden or max(1, hidden // 2), dropout, num_cwe, activation="gelu")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            pooled = states[:, 0]
        elif self.pooling == "mean":
            pooled = masked_mean(states, attention_mask)
        else:
            pooled = attention_pool(self.score(states).squeeze(-1), states, attention_mask)
        return self.heads(self.dropout(pooled))


def load_backbone(name: str) -> nn.Module:
    from streamguard.pretrained import load_auto_model

    return load_auto_model(name)


def check_tokenizer(name: str, info) -> None:
    """The shards' token ids must be the backbone's: same tokenizer content (fingerprint)."""
    from streamguard.data.tokens import load_tokenizer, tokenizer_fingerprint
    from streamguard.errors import DataError

    tok = info.tokenizer
    fix = f"set data.tokenizer=backbone (or data.tokenizer={name}) so the token windows are made with it"
    if not tok:
        raise ConfigError(f"the transformer track reads token windows, but the data has none (data.tokenizer=null); {fix}")
    try:
        mine = tokenizer_fingerprint(load_tokenizer(name))
    except DataError as exc:
        raise ConfigError(f"backbone {name!r}: its tokenizer cannot be loaded: {exc}") from None
    if tok.get("sha256") != mine:
        raise ConfigError(f"model.transformer.backbone={name!r} needs token ids from its own tokenizer, but the data "
                          f"was prepared with data.tokenizer={tok.get('name')!r} (a different vocabulary); {fix}")


def _freeze(backbone: nn.Module, n: int) -> None:
    layers = getattr(getattr(backbone, "encoder", None), "layer", None)
    embeddings = getattr(backbone, "embeddings", None)
    if layers is None or embeddings is None:
        raise ConfigError(f"freeze_layers works for BERT/RoBERTa-style backbones (embeddings + encoder.layer); "
                          f"{type(backbone).__name__} has another layout")
    if n > len(layers):
        raise ConfigError(f"freeze_layers={n} but the backbone has {len(layers)} layers")
    for module in [embeddings, *layers[:n]]:
        for p in module.parameters():
            p.requires_grad_(False)


def build_model(settings, info, num_cwe: int = 0) -> TransformerClassifier:
    from streamguard.pretrained import position_limit

    backbone = load_backbone(settings.backbone)  # first: a missing backbone says how to provide it
    check_tokenizer(settings.backbone, info)
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # unused (we pool ourselves); unused parameters would break DDP
    vocab = getattr(backbone.config, "vocab_size", None)
    if vocab is not None and info.vocab_size and info.vocab_size > vocab:
        raise ConfigError(f"the tokenizer has {info.vocab_size} ids but backbone {settings.backbone!r} embeds {vocab}")
    limit, window = position_limit(backbone), (info.tokenizer or {}).get("max_tokens")
    if limit is not None and window and window > limit:
        raise ConfigError(f"data.max_tokens={window} but backbone {settings.backbone!r} takes at most {limit} tokens: "
                          f"set data.max_tokens={limit}")
    if settings.freeze_layers:
        _freeze(backbone, settings.freeze_layers)
    if settings.gradient_checkpointing:
        backbone.gradient_checkpointing_enable()
    return TransformerClassifier(backbone, pooling=settings.pooling, head_hidden=settings.head_hidden,
                                 dropout=settings.dropout, num_cwe=num_cwe)


def tokens(split):
    from streamguard.data.shards import TokenDataset

    return split.view("tokens", TokenDataset)


def make_loader(split, *, batch_size: int, sampler=None, generator=None, num_workers: int = 0,
                prefetch_factor=None, persistent_workers: bool = False, drop_last: bool = False,
                pad_to_multiple_of: int = 8) -> DataLoader:
    from functools import partial

    from streamguard.data.shards import collate_tokens

    return DataLoader(tokens(split), batch_size=batch_size, sampler=sampler, shuffle=False,
                      collate_fn=partial(collate_tokens, pad_id=split.pad_id, pad_to_multiple_of=pad_to_multiple_of),
                      **loader_options(num_workers=num_workers, prefetch_factor=prefetch_factor,
                                       persistent_workers=persistent_workers, drop_last=drop_last,
                                       generator=generator))


def forward(model, batch: dict, device):
    b = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    return output(model(b["input_ids"], b["attention_mask"]), b["labels"], b["sample_ids"],
                  weight=b.get("weight"), cwe=b.get("cwe"))


TRACK = TrackSpec(name="transformer", config_field="transformer", build_model=build_model, make_loader=make_loader,
                  forward=forward)
