"""Records -> leakage-safe splits -> PyG `Data` graphs: the builder the training loop calls.

Splitting is by `group` (fixed twins and duplicate texts share one), seeded, so the same
config always gives the same split on every rank and every restart.
"""

from __future__ import annotations

import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass, field

import torch

from streamguard.data.parse import FunctionGraph, num_node_types, parse_function
from streamguard.data.sources import read_source
from streamguard.errors import DataError

log = logging.getLogger(__name__)
SPLITS = ("train", "valid", "test")


@dataclass
class DataInfo:
    num_node_types: int
    token_buckets: int
    counts: dict = field(default_factory=dict)     # split -> {"n", "positive"}
    skipped: dict = field(default_factory=dict)    # reason -> count
    tiers: dict = field(default_factory=dict)      # tier -> count
    sources: dict = field(default_factory=dict)    # spec -> sha256

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Splits:
    train: list
    valid: list
    test: list
    info: DataInfo


def to_data(graph: FunctionGraph, target: int, sample_id: int):
    """FunctionGraph -> PyG Data; edges made bidirectional so messages flow both ways."""
    from torch_geometric.data import Data

    ei = torch.from_numpy(graph.edge_index)
    et = torch.from_numpy(graph.edge_type).long()
    return Data(
        x=torch.stack([torch.from_numpy(graph.node_type).long(), torch.from_numpy(graph.token_id).long()], dim=1),
        edge_index=torch.cat([ei, ei.flip(0)], dim=1),
        edge_type=torch.cat([et, et]),
        y=torch.tensor([target], dtype=torch.long),
        sample_id=torch.tensor([sample_id], dtype=torch.long),
    )


def split_records(records: list[dict], *, valid_fraction: float, test_fraction: float, seed: int) -> dict[str, list[dict]]:
    groups = sorted({r["group"] for r in records})
    random.Random(seed).shuffle(groups)
    n_test, n_valid = round(len(groups) * test_fraction), round(len(groups) * valid_fraction)
    assign = {g: "test" for g in groups[:n_test]}
    assign.update({g: "valid" for g in groups[n_test:n_test + n_valid]})
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for r in records:
        out[assign.get(r["group"], "train")].append(r)
    return out


def build_graphs(records: list[dict], *, max_nodes: int, max_source_bytes: int, token_buckets: int,
                 info: DataInfo, desc: str = "parse") -> list:
    graphs = []
    show_bar = sys.stderr.isatty() and len(records) > 2000
    iterator = records
    if show_bar:
        from tqdm import tqdm

        iterator = tqdm(records, desc=desc, unit="fn")
    for r in iterator:
        code = r["func"].encode("utf-8", errors="replace")
        if not code.strip():
            info.skipped["empty"] = info.skipped.get("empty", 0) + 1
            continue
        if len(code) > max_source_bytes:
            info.skipped["oversize"] = info.skipped.get("oversize", 0) + 1
            continue
        g = parse_function(code, max_nodes=max_nodes, token_buckets=token_buckets)
        info.tiers[g.tier] = info.tiers.get(g.tier, 0) + 1
        if g.truncated:
            info.skipped["truncated_nodes(kept)"] = info.skipped.get("truncated_nodes(kept)", 0) + 1
        graphs.append(to_data(g, r["target"], r["idx"]))
    return graphs


def load_splits(*, source: str, valid_source: str | None, test_source: str | None, synthetic_size: int,
                valid_fraction: float, test_fraction: float, limit: int | None, max_nodes: int,
                max_source_bytes: int, token_buckets: int, seed: int) -> Splits:
    """Read the sources, split what is not given separately, parse every function."""
    main = read_source(source, synthetic_size=synthetic_size, seed=seed, limit=limit)
    info = DataInfo(num_node_types=num_node_types("c"), token_buckets=token_buckets, sources={source: main.sha256})
    split = split_records(main.records,
                          valid_fraction=0.0 if valid_source else valid_fraction,
                          test_fraction=0.0 if test_source else test_fraction, seed=seed)
    for name, spec in (("valid", valid_source), ("test", test_source)):
        if spec:
            extra = read_source(spec, synthetic_size=synthetic_size, seed=seed + 1, limit=limit)
            info.sources[spec] = extra.sha256
            split[name] = extra.records
    built = {}
    for name in SPLITS:
        built[name] = build_graphs(split[name], max_nodes=max_nodes, max_source_bytes=max_source_bytes,
                                   token_buckets=token_buckets, info=info, desc=f"parse {name}")
        labels = Counter(int(d.y) for d in built[name])
        info.counts[name] = {"n": len(built[name]), "positive": labels.get(1, 0)}
    if not built["train"]:
        raise DataError(f"no usable training functions in {source!r} (skipped: {info.skipped})")
    if not built["valid"]:
        raise DataError("the validation split is empty: raise data.valid_fraction or set data.valid_source")
    log.info("data: %s", {k: v["n"] for k, v in info.counts.items()})
    return Splits(built["train"], built["valid"], built["test"], info)
