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
from itertools import chain, repeat
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from streamguard.data.flow import AstArrays, flow_edges, index_kinds

# Edge kinds. AST parent->child, and NCS ("natural code sequence", as in Devign):
# each leaf token -> the next leaf in source order, so statement order is visible
# (free-then-use vs use-then-free). CFG: statement-level control flow; DFG: reaching
# definitions, def site -> use site of a variable (both from `flow.flow_edges`).
EDGE_AST, EDGE_NCS, EDGE_CFG, EDGE_DFG = 0, 1, 2, 3
EDGE_KINDS = ("ast", "ncs", "cfg", "dfg")

# Parse tiers recorded per sample.
TIER_FULL, TIER_PARTIAL = "full", "partial"


@dataclass(frozen=True)
class FunctionGraph:
    node_type: np.ndarray   # [N] int32 grammar node-kind id
    token_id: np.ndarray    # [N] int32 hashed leaf text in 1..buckets-1; 0 for inner nodes
    edge_index: np.ndarray  # [2, E] int64 source -> target
    edge_type: np.ndarray   # [E] int8 kind (EDGE_AST, EDGE_NCS, EDGE_CFG, EDGE_DFG)
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


LANGS = ("c", "cpp")


@lru_cache(maxsize=None)
def num_node_types(lang: str = "c") -> int:
    """Node kinds of one grammar plus one id for ERROR nodes (kind id 65535 in tree-sitter)."""
    return int(_language(lang).node_kind_count) + 1


def node_type_offset(lang: str) -> int:
    """Where a grammar's block starts in the shared vocabulary: C and C++ kind ids mean
    different things, so each grammar gets its own block."""
    return sum(num_node_types(other) for other in LANGS[: LANGS.index(lang)])


def node_type_vocab_size() -> int:
    """Embedding rows for node types: every grammar's block."""
    return sum(num_node_types(lang) for lang in LANGS)


def error_type_id(lang: str) -> int:
    """The shared-vocabulary id of a grammar's ERROR nodes."""
    return node_type_offset(lang) + num_node_types(lang) - 1


@lru_cache(maxsize=None)
def _identifier_kind(lang: str) -> int:
    return _language(lang).id_for_node_kind("identifier", True)


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
    parents: list[int] = []  # the parent of node i >= 1 is parents[i - 1] (AST edge parent -> i)
    # For flow_edges: graph index of the nodes it can use (statements, for-loop parts) by
    # tree-sitter id, and the identifier leaves.
    index_of: dict[int, int] = {}
    identifiers: list[int] = []
    identifier_kind = _identifier_kind(lang)
    indexed_kinds, for_kinds = index_kinds(lang)
    # Breadth-first with an explicit queue: no recursion, and truncation keeps the top of the tree.
    # This loop runs once per node of every function prepared: methods are bound to locals,
    # children are queued with C-level zip/repeat instead of a generator, a span is the
    # node's own `byte_range` tuple, and AST edge targets are implied (node i's parent edge
    # is the (i-1)-th).
    queue: deque = deque([(root, -1)])
    pop, push = queue.popleft, queue.extend
    add_type, add_token, add_span = node_type.append, token_id.append, spans.append
    add_parent = parents.append
    leaves: list[int] = []
    add_leaf = leaves.append
    truncated = False
    idx = -1
    while queue:
        node, parent = pop()
        idx += 1
        if idx >= max_nodes:
            truncated = True
            break
        kind = node.kind_id
        add_type(kind if kind < error_id else error_id)
        span = node.byte_range
        add_span(span)
        child_count = node.child_count
        if child_count == 0:
            start, end = span
            add_token(token_bucket(code[start:end] or node.type.encode(), token_buckets))
            add_leaf(idx)
            if kind == identifier_kind:
                identifiers.append(idx)
        else:
            add_token(0)
            children = node.children
            push(zip(children, repeat(idx)))
            if kind in indexed_kinds:
                index_of[node.id] = idx
                if kind in for_kinds:  # its children get the next free indices after the queue
                    first = idx + len(queue) - child_count + 1
                    for j, child in enumerate(children):
                        if first + j < max_nodes:
                            index_of[child.id] = first + j
        if parent >= 0:
            add_parent(parent)

    n = len(node_type)
    span_arr = np.fromiter(chain.from_iterable(spans), dtype=np.int64, count=2 * n).reshape(-1, 2)
    # NCS: the leaves in source order (ties: BFS order), each to the next.
    leaf = np.asarray(leaves, dtype=np.int64)
    leaf = leaf[np.argsort(span_arr[leaf, 0], kind="stable")]
    cfg, dfg = flow_edges(root, index_of, lang,
                          ast=AstArrays(node_type, spans, parents, identifiers, code))
    sizes = [len(parents), max(len(leaf) - 1, 0), len(cfg), len(dfg)]  # AST, NCS, CFG, DFG, in this order
    n_ast, n_tree = sizes[0], sizes[0] + sizes[1]
    edge_index = np.empty((2, sum(sizes)), dtype=np.int64)
    edge_index[0, :n_ast] = parents
    edge_index[1, :n_ast] = np.arange(1, n_ast + 1)
    edge_index[0, n_ast:n_tree] = leaf[:-1]
    edge_index[1, n_ast:n_tree] = leaf[1:]
    edge_index[:, n_tree:] = np.asarray(cfg + dfg, dtype=np.int64).reshape(-1, 2).T
    edge_type = np.repeat(np.array([EDGE_AST, EDGE_NCS, EDGE_CFG, EDGE_DFG], dtype=np.int8), sizes)
    return FunctionGraph(
        # The walk and flow_edges use the grammar's own kind ids; stored ids are shifted
        # into the grammar's block of the shared vocabulary.
        node_type=np.asarray(node_type, dtype=np.int32) + node_type_offset(lang),
        token_id=np.asarray(token_id, dtype=np.int32),
        edge_index=edge_index,
        edge_type=edge_type,
        span=span_arr,  # fromiter over a flat chain: ~3x cheaper than asarray on lists of tuples
        tier=TIER_PARTIAL if root.has_error else TIER_FULL,
        truncated=truncated,
    )
