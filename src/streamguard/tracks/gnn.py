"""`gnn` track: a PyTorch Geometric graph classifier over the function's code graph.

Node embedding = node-type embedding + leaf-token embedding (+ projected encoder token
vectors on leaves, `encoder: leaf`); GCN, GraphSAGE, GATv2 (optionally with edge-type
features), GatedGraphConv or relation-aware RGCN layers over the chosen edge kinds (AST,
NCS, CFG, DFG, each both ways) with residual connections; mean+max or attention pooling
(+ the function's transformer CLS vector, `encoder: cls`); a two-layer head giving logits
for (safe, vulnerable), and optionally a multi-label CWE head.
"""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.loader import DataLoader
from torch_geometric.nn import (AttentionalAggregation, GatedGraphConv, GATv2Conv, GCNConv, RGCNConv, SAGEConv,
                                global_max_pool, global_mean_pool)

from streamguard.data.shards import NUM_EDGE_KINDS
from streamguard.errors import ConfigError
from streamguard.registry import TrackSpec
from streamguard.tracks.common import Heads, loader_options, output

EDGE_KIND_IDS = {"ast": 0, "ncs": 1, "cfg": 2, "dfg": 3}  # parse.EDGE_KINDS order
NUM_RELATIONS = 2 * NUM_EDGE_KINDS                         # each kind forward and reverse


class GraphEncoder(nn.Module):
    """A batch of code graphs -> one vector per graph ([B, out_dim])."""

    def __init__(self, *, num_node_types: int, token_buckets: int, hidden: int, layers: int, dropout: float,
                 conv: str, heads: int = 4, edge_kinds=("ast", "ncs", "cfg", "dfg"), edge_types: bool = False,
                 pooling: str = "meanmax", cls_dim: int = 0, leaf_dim: int = 0):
        super().__init__()
        self.conv_kind = conv
        self.type_emb = nn.Embedding(num_node_types, hidden)
        self.token_emb = nn.Embedding(token_buckets, hidden, padding_idx=0)  # 0 = inner node
        self.leaf_proj = nn.Linear(leaf_dim, hidden) if leaf_dim else None
        keep = torch.zeros(NUM_RELATIONS, dtype=torch.bool)
        for kind in edge_kinds:
            keep[EDGE_KIND_IDS[kind]] = keep[EDGE_KIND_IDS[kind] + NUM_EDGE_KINDS] = True
        self.register_buffer("keep_relation", keep, persistent=False)
        self.filter_edges = not bool(keep.all())
        self.edge_emb = nn.Embedding(NUM_RELATIONS, hidden) if edge_types and conv == "gat" else None
        if conv == "ggnn":  # one gated layer that propagates `layers` steps with shared weights
            self.convs = nn.ModuleList([GatedGraphConv(hidden, num_layers=layers)])
        else:
            make = {
                "gcn": lambda: GCNConv(hidden, hidden),
                "sage": lambda: SAGEConv(hidden, hidden),
                "gat": lambda: GATv2Conv(hidden, hidden // heads, heads=heads,
                                         edge_dim=hidden if self.edge_emb is not None else None),
                "rgcn": lambda: RGCNConv(hidden, hidden, num_relations=NUM_RELATIONS),
            }[conv]
            self.convs = nn.ModuleList(make() for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in self.convs)
        self.dropout = nn.Dropout(dropout)
        self.attention = (AttentionalAggregation(gate_nn=nn.Linear(hidden, 1), nn=nn.Linear(hidden, 2 * hidden))
                          if pooling == "attention" else None)
        self.cls_proj = nn.Linear(cls_dim, hidden) if cls_dim else None
        self.out_dim = 2 * hidden + (hidden if cls_dim else 0)

    def forward(self, batch) -> torch.Tensor:
        x, edge_index, edge_type = batch.x, batch.edge_index, batch.edge_type
        if self.filter_edges:
            keep = self.keep_relation[edge_type]
            edge_index, edge_type = edge_index[:, keep], edge_type[keep]
        h = self.type_emb(x[:, 0]) + self.token_emb(x[:, 1])
        if self.leaf_proj is not None:
            h = h + self.leaf_proj(batch.enc_node)
        edge_attr = self.edge_emb(edge_type) if self.edge_emb is not None else None
        for conv, norm in zip(self.convs, self.norms):
            if self.conv_kind == "rgcn":
                m = conv(h, edge_index, edge_type)
            elif edge_attr is not None:
                m = conv(h, edge_index, edge_attr=edge_attr)
            else:
                m = conv(h, edge_index)
            h = h + self.dropout(torch.relu(norm(m)))  # residual keeps deep stacks trainable
        if self.attention is not None:
            pooled = self.attention(h, batch.batch, dim_size=batch.num_graphs)
        else:
            pooled = torch.cat([global_mean_pool(h, batch.batch, batch.num_graphs),
                                global_max_pool(h, batch.batch, batch.num_graphs)], dim=1)
        if self.cls_proj is not None:
            pooled = torch.cat([pooled, torch.relu(self.cls_proj(batch.enc_cls))], dim=1)
        return pooled


class GNNClassifier(nn.Module):
    def __init__(self, *, hidden: int, dropout: float, num_cwe: int = 0, **encoder):
        super().__init__()
        self.encoder = GraphEncoder(hidden=hidden, dropout=dropout, **encoder)
        self.heads = Heads(self.encoder.out_dim, hidden, dropout, num_cwe)

    def forward(self, batch):
        return self.heads(self.encoder(batch))


def encoder_dims(settings, info) -> dict:
    """CLS / leaf feature sizes for `settings.encoder`, checked against the data."""
    if settings.encoder == "none":
        return {}
    enc = info.encoder or {}
    dim = enc.get(f"{settings.encoder}_dim")
    if not dim:
        raise ConfigError(f"encoder={settings.encoder} needs `{settings.encoder}` encoder features in the prepared data, "
                          f"which has {sorted(k[:-4] for k in enc if k.endswith('_dim')) or 'none'}: run "
                          f"`streamguard data augment PREPARED --out DIR --encoder BACKBONE --mode {settings.encoder}` "
                          "and train on data.source=prepared:DIR")
    return {f"{settings.encoder}_dim": int(dim)}


def graph_encoder_args(settings, info) -> dict:
    return dict(num_node_types=info.num_node_types, token_buckets=info.token_buckets, layers=settings.layers,
                conv=settings.conv, heads=settings.heads, edge_kinds=tuple(settings.edge_kinds),
                edge_types=settings.edge_types, pooling=settings.pooling, **encoder_dims(settings, info))


def build_model(settings, info, num_cwe: int = 0) -> GNNClassifier:
    return GNNClassifier(hidden=settings.hidden, dropout=settings.dropout, num_cwe=num_cwe,
                         **graph_encoder_args(settings, info))


def graphs(split):
    from streamguard.data.shards import GraphDataset

    return split.view("graph", GraphDataset)


def make_loader(split, *, batch_size: int, sampler=None, generator=None, num_workers: int = 0,
                prefetch_factor=None, persistent_workers: bool = False, drop_last: bool = False,
                pad_to_multiple_of: int = 8) -> DataLoader:
    # A PyG DataLoader with our own sampler; Ray's prepare_data_loader must never rebuild it.
    return DataLoader(graphs(split), batch_size=batch_size, sampler=sampler, shuffle=False,
                      **loader_options(num_workers=num_workers, prefetch_factor=prefetch_factor,
                                       persistent_workers=persistent_workers, drop_last=drop_last,
                                       generator=generator))


def forward(model, batch, device):
    batch = batch.to(device, non_blocking=True)
    return output(model(batch), batch.y, batch.sample_id, weight=batch.get("weight"), cwe=batch.get("cwe"))


TRACK = TrackSpec(name="gnn", config_field="gnn", build_model=build_model, make_loader=make_loader, forward=forward)
