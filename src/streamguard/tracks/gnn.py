"""`gnn` track: a PyTorch Geometric graph classifier over the function AST.

Node embedding = node-type embedding + leaf-token embedding; GCN or GraphSAGE layers with
residual connections; mean+max pooling; a two-layer head giving logits for (safe, vulnerable).
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import GCNConv, SAGEConv, global_max_pool, global_mean_pool

from streamguard.registry import TrackSpec


class GNNClassifier(nn.Module):
    def __init__(self, *, num_node_types: int, token_buckets: int, hidden: int, layers: int,
                 dropout: float, conv: str):
        super().__init__()
        self.type_emb = nn.Embedding(num_node_types, hidden)
        self.token_emb = nn.Embedding(token_buckets, hidden, padding_idx=0)  # 0 = inner node
        make = {"gcn": lambda: GCNConv(hidden, hidden), "sage": lambda: SAGEConv(hidden, hidden)}[conv]
        self.convs = nn.ModuleList(make() for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 2))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        h = self.type_emb(x[:, 0]) + self.token_emb(x[:, 1])
        for conv, norm in zip(self.convs, self.norms):
            h = h + self.dropout(torch.relu(norm(conv(h, edge_index))))  # residual keeps deep stacks trainable
        pooled = torch.cat([global_mean_pool(h, batch), global_max_pool(h, batch)], dim=1)
        return self.head(pooled)


def build_model(settings, info) -> GNNClassifier:
    return GNNClassifier(num_node_types=info.num_node_types, token_buckets=info.token_buckets,
                         hidden=settings.hidden, layers=settings.layers, dropout=settings.dropout,
                         conv=settings.conv)


def make_loader(dataset, *, batch_size: int, sampler=None, num_workers: int = 0, generator=None) -> DataLoader:
    # A PyG DataLoader with our own sampler; Ray's prepare_data_loader must never rebuild it.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                      num_workers=num_workers, generator=generator, persistent_workers=False)


def forward(model, batch, device):
    batch = batch.to(device, non_blocking=True)
    return model(batch.x, batch.edge_index, batch.batch), batch.y, batch.sample_id


TRACK = TrackSpec(name="gnn", config_field="gnn", build_model=build_model, make_loader=make_loader, forward=forward)
