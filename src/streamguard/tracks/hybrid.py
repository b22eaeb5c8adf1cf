"""`hybrid` track: a GNN over the code graph and a BiLSTM over the token window of the same
function, fused (concatenation or a learned gate) before one head.

Both views come from the same prepared row, so the graph batch and the token batch line
up sample by sample.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torch.utils.data import DataLoader

from streamguard.errors import ConfigError
from streamguard.registry import TrackSpec
from streamguard.tracks.common import Heads, loader_options, masked_mean, output
from streamguard.tracks.gnn import GraphEncoder, graph_encoder_args


class SequenceEncoder(nn.Module):
    """Token window -> BiLSTM -> masked mean and max over time ([B, 4 * hidden]).

    Each direction is its own LSTM on the padded batch; the backward one reads every row's
    real tokens reversed (a gather), so padding never reaches a real token's state. This
    avoids packed sequences, whose backward on CPU copies the whole input once per time
    step (quadratic in the window: 5x slower here)."""

    def __init__(self, *, vocab_size: int, pad_id: int, embedding: int, hidden: int, layers: int, dropout: float,
                 max_tokens: int):
        super().__init__()
        self.max_tokens = max_tokens
        self.emb = nn.Embedding(vocab_size, embedding, padding_idx=pad_id)
        self.forward_lstms = nn.ModuleList(nn.LSTM(embedding if i == 0 else 2 * hidden, hidden, batch_first=True)
                                           for i in range(layers))
        self.backward_lstms = nn.ModuleList(nn.LSTM(embedding if i == 0 else 2 * hidden, hidden, batch_first=True)
                                            for i in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.out_dim = 4 * hidden

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        ids, mask = input_ids[:, :self.max_tokens], attention_mask[:, :self.max_tokens]
        steps = torch.arange(ids.shape[1], device=ids.device)[None]
        lengths = mask.sum(1, keepdim=True)
        rev = torch.where(steps < lengths, lengths - 1 - steps, steps)  # reverses each row's real tokens
        x = self.emb(ids)
        for i, (fwd, bwd) in enumerate(zip(self.forward_lstms, self.backward_lstms)):
            if i:
                x = self.dropout(x)
            f, _ = fwd(x)
            b, _ = bwd(x.gather(1, rev[..., None].expand_as(x)))
            x = torch.cat([f, b.gather(1, rev[..., None].expand_as(b))], dim=-1)
        masked = x.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(x.dtype).min)
        return torch.cat([masked_mean(x, mask), masked.max(dim=1).values], dim=1)


class HybridClassifier(nn.Module):
    def __init__(self, *, graph: dict, sequence: dict, hidden: int, dropout: float, fusion: str, num_cwe: int = 0):
        super().__init__()
        self.graph = GraphEncoder(hidden=hidden, dropout=dropout, **graph)
        self.sequence = SequenceEncoder(dropout=dropout, **sequence)
        self.fusion = fusion
        if fusion == "gate":
            self.g_proj = nn.Linear(self.graph.out_dim, hidden)
            self.s_proj = nn.Linear(self.sequence.out_dim, hidden)
            self.gate = nn.Linear(2 * hidden, hidden)
            fused = hidden
        else:
            fused = self.graph.out_dim + self.sequence.out_dim
        self.dropout = nn.Dropout(dropout)
        self.heads = Heads(fused, hidden, dropout, num_cwe)

    def forward(self, graph_batch, input_ids, attention_mask):
        g, s = self.graph(graph_batch), self.sequence(input_ids, attention_mask)
        if self.fusion == "gate":
            g, s = torch.tanh(self.g_proj(g)), torch.tanh(self.s_proj(s))
            z = torch.sigmoid(self.gate(torch.cat([g, s], dim=1)))
            fused = z * g + (1 - z) * s
        else:
            fused = torch.cat([g, s], dim=1)
        return self.heads(self.dropout(fused))


def build_model(settings, info, num_cwe: int = 0) -> HybridClassifier:
    if not info.vocab_size:
        raise ConfigError("the hybrid track reads token windows, but the data has none: set data.tokenizer "
                          "(e.g. builtin:c-bpe)")
    g = settings.gnn
    return HybridClassifier(
        graph=graph_encoder_args(g, info),
        sequence=dict(vocab_size=info.vocab_size, pad_id=(info.tokenizer or {}).get("pad_id", 0),
                      embedding=settings.embedding, hidden=settings.lstm_hidden, layers=settings.lstm_layers,
                      max_tokens=settings.max_tokens),
        hidden=g.hidden, dropout=g.dropout, fusion=settings.fusion, num_cwe=num_cwe)


class PairDataset:
    """Item i -> (PyG Data, token window) of the same prepared row."""

    def __init__(self, split):
        from streamguard.data.shards import GraphDataset, TokenDataset

        self.graphs = split.view("graph", GraphDataset)
        self.tokens = split.view("tokens", TokenDataset)

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int):
        return self.graphs[i], self.tokens[i]


def collate_pairs(items, *, pad_id: int, pad_to_multiple_of: int):
    from torch_geometric.data import Batch

    from streamguard.data.shards import collate_tokens

    graphs, tokens = zip(*items)
    return Batch.from_data_list(list(graphs)), collate_tokens(list(tokens), pad_id=pad_id,
                                                              pad_to_multiple_of=pad_to_multiple_of)


def make_loader(split, *, batch_size: int, sampler=None, generator=None, num_workers: int = 0,
                prefetch_factor=None, persistent_workers: bool = False, drop_last: bool = False,
                pad_to_multiple_of: int = 8) -> DataLoader:
    return DataLoader(split.view("pairs", PairDataset), batch_size=batch_size, sampler=sampler, shuffle=False,
                      collate_fn=partial(collate_pairs, pad_id=split.pad_id, pad_to_multiple_of=pad_to_multiple_of),
                      **loader_options(num_workers=num_workers, prefetch_factor=prefetch_factor,
                                       persistent_workers=persistent_workers, drop_last=drop_last,
                                       generator=generator))


def forward(model, batch, device):
    graph, tok = batch
    graph = graph.to(device, non_blocking=True)
    ids, mask = tok["input_ids"].to(device, non_blocking=True), tok["attention_mask"].to(device, non_blocking=True)
    return output(model(graph, ids, mask), graph.y, graph.sample_id, weight=graph.get("weight"),
                  cwe=graph.get("cwe"))


TRACK = TrackSpec(name="hybrid", config_field="hybrid", build_model=build_model, make_loader=make_loader,
                  forward=forward)
