"""C source -> tree-sitter AST -> flat graph arrays.

The graph is plain NumPy (node features, typed edges, byte spans) so it can later be
stored as Parquet columns and turned into a PyG `Data` without re-parsing. Node features
are the grammar's node-type id and a hashed id of the token text for leaves (so `strcpy`
and `strncpy`, `<` and `<=` differ). Walks are iterative: deep nesting cannot hit the
recursion limit.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Edge kinds. AST parent->child, and NCS ("natural code sequence", as in Devign):
# each leaf token -> the next leaf in source order, so statement order is visible
# (free-then-use vs use-then-free). The data-pipeline issue adds CFG and DFG kinds.
EDGE_AST, EDGE_NCS = 0, 1
EDGE_KINDS = ("ast", "ncs")

# Parse tiers recorded per sample.
TIER_FULL, TIER_PARTIAL = "full", "partial"


@dataclass(frozen=True)
class FunctionGraph:
    node_type: np.ndarray   # [N] int32 grammar node-kind id
    token_id: np.ndarray    # [N] int32 hashed leaf text in 1..buckets-1; 0 for inner nodes
    edge_index: np.ndarray  # [2, E] int64 source -> target
    edge_type: np.ndarray   # [E] int8 kind (EDGE_AST, EDGE_NCS, ...)
    span: np.ndarray        # [N, 2] int64 byte start/end in the source
    tier: str               # "full" or "partial" (ERROR/MISSING nodes kept)
    truncated: bool         # more than max_nodes nodes: kept the first max_nodes in BFS order

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])


@lru_cache(maxsize=None)
def _language(lang: str):
    import tree_sitter

    if lang == "c":
        import tree_sitter_c as grammar
    elif lang == "cpp":
        import tree_sitter_cpp as grammar  # optional grammar, used by the data-pipeline issue
    else:
        raise ValueError(f"unsupported language {lang!r}; expected 'c' or 'cpp'")
    return tree_sitter.Language(grammar.language())


@lru_cache(maxsize=None)
def num_node_types(lang: str = "c") -> int:
    """Size of the node-type vocabulary (embedding rows) for a grammar: its kinds plus one
    id for ERROR nodes, whose kind id is 65535 in tree-sitter."""
    return int(_language(lang).node_kind_count) + 1


@lru_cache(maxsize=None)
def _parser(lang: str):
    import tree_sitter

    return tree_sitter.Parser(_language(lang))


def token_bucket(text: bytes, buckets: int) -> int:
    """Stable across processes (unlike hash()): crc32 mod buckets, 0 reserved for 'not a leaf'."""
    return 1 + zlib.crc32(text) % (buckets - 1)


def parse_function(source: str | bytes, *, lang: str = "c", max_nodes: int = 4000,
                   token_buckets: int = 4096) -> FunctionGraph:
    """Parse one function. Always returns a graph (tree-sitter is error tolerant); the tier
    says whether ERROR/MISSING nodes were present."""
    code = source.encode("utf-8", errors="replace") if isinstance(source, str) else source
    tree = _parser(lang).parse(code)
    error_id = num_node_types(lang) - 1
    root = tree.root_node

    node_type: list[int] = []
    token_id: list[int] = []
    spans: list[tuple[int, int]] = []
    src: list[int] = []
    dst: list[int] = []
    # Breadth-first with an explicit queue: no recursion, and truncation keeps the top of the tree.
    queue: deque = deque([(root, -1)])
    truncated = False
    while queue:
        node, parent = queue.popleft()
        if len(node_type) >= max_nodes:
            truncated = True
            break
        idx = len(node_type)
        kind = node.kind_id
        node_type.append(kind if kind < error_id else error_id)
        start, end = node.start_byte, node.end_byte
        spans.append((start, end))
        if node.child_count == 0:
            token_id.append(token_bucket(code[start:end] or node.type.encode(), token_buckets))
        else:
            token_id.append(0)
            queue.extend((child, idx) for child in node.children)
        if parent >= 0:
            src.append(parent)
            dst.append(idx)

    n_ast = len(src)
    leaves = sorted((spans[i][0], i) for i, tok in enumerate(token_id) if tok)
    for (_, a), (_, b) in zip(leaves, leaves[1:]):
        src.append(a)
        dst.append(b)
    return FunctionGraph(
        node_type=np.asarray(node_type, dtype=np.int32),
        token_id=np.asarray(token_id, dtype=np.int32),
        edge_index=np.asarray([src, dst], dtype=np.int64).reshape(2, -1),
        edge_type=np.asarray([EDGE_AST] * n_ast + [EDGE_NCS] * (len(src) - n_ast), dtype=np.int8),
        span=np.asarray(spans, dtype=np.int64).reshape(-1, 2),
        tier=TIER_PARTIAL if root.has_error else TIER_FULL,
        truncated=truncated,
    )
