"""C source -> tree-sitter AST -> flat graph arrays.

The graph is plain NumPy (node features, typed edges, byte spans) so it can later be
stored as Parquet columns and turned into a PyG `Data` without re-parsing. Node features
are the grammar's node-type id and a hashed id of the token text for leaves (so `strcpy`
and `strncpy`, `<` and `<=` differ).

The parse and the breadth-first walk run in C (`_treewalk`, built from
src/streamguard/data/_treewalk.c against the vendored tree-sitter runtime): one call returns
the whole tree as arrays (`SyntaxTree`), so the graph is array slicing, and the CFG/DFG
analysis (`flow.flow_arrays`) is a second C call over the same arrays. Walks are iterative:
deep nesting cannot hit a recursion limit. The Python `tree_sitter` binding still supplies the grammar
metadata (kind and field names) and serves the callers that need node objects.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from streamguard.data import _treewalk
from streamguard.data.flow import flow_arrays

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
def _grammar(lang: str):
    """The grammar's capsule (a TSLanguage pointer), as the grammar package hands it out."""
    if lang == "c":
        import tree_sitter_c as grammar
    elif lang == "cpp":
        import tree_sitter_cpp as grammar
    else:
        raise ValueError(f"unsupported language {lang!r}; expected 'c' or 'cpp'")
    return grammar.language()


@lru_cache(maxsize=None)
def _language(lang: str):
    import tree_sitter

    return tree_sitter.Language(_grammar(lang))


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
def _parser(lang: str):
    import tree_sitter

    return tree_sitter.Parser(_language(lang))


def token_bucket(text: bytes, buckets: int) -> int:
    """Stable across processes (unlike hash()): crc32 mod buckets, 0 reserved for 'not a leaf'."""
    return 1 + zlib.crc32(text) % (buckets - 1)


class SyntaxTree(NamedTuple):
    """A whole tree-sitter tree in breadth-first order: node 0 is the root, and the children
    of node i are first[i] .. first[i] + nchild[i] - 1 (contiguous, in source order). The
    arrays are typed memoryviews: indexing gives Python ints, `np.frombuffer` gives NumPy
    arrays without a copy, and `flow` hands them back to C as buffers."""
    count: int             # nodes (tree-sitter's visible nodes: root.descendant_count)
    has_error: bool        # ERROR / MISSING nodes present (root.has_error)
    kind: memoryview       # uint16 kind_id (65535 for ERROR)
    named: memoryview      # uint8 is_named
    field: memoryview      # uint16 field id in the parent (0: none)
    parent: memoryview     # int32 (-1 for the root)
    first: memoryview      # int32 first child
    nchild: memoryview     # int32 child count
    start: memoryview      # uint32 byte span
    end: memoryview        # uint32
    bucket: memoryview     # int32 token_bucket of a leaf's text (its type name if empty); 0 inside
    source: bytes          # the parsed bytes
    lang: str              # "c" or "cpp": the grammar it was parsed with


_FORMATS = "HBHiiiIIi"


def syntax_tree(code: bytes, lang: str = "c", token_buckets: int = 4096) -> SyntaxTree:
    """Parse `code` with the grammar of `lang` and lay the tree out as arrays (one C call)."""
    count, has_error, *arrays = _treewalk.walk(code, _grammar(lang), token_buckets)
    views = [memoryview(a).cast(f) for a, f in zip(arrays, _FORMATS)]
    return SyntaxTree(count, has_error, *views, code, lang)


def parse_function(source: str | bytes, *, lang: str = "c", max_nodes: int = 4000,
                   token_buckets: int = 4096) -> FunctionGraph:
    """Parse one function. Always returns a graph (tree-sitter is error tolerant); the tier
    says whether ERROR/MISSING nodes were present. The graph keeps the first max_nodes nodes
    in breadth-first order (the top of the tree)."""
    code = source.encode("utf-8", errors="replace") if isinstance(source, str) else source
    tree = syntax_tree(code, lang, token_buckets)
    n = min(tree.count, max_nodes)
    kind = np.frombuffer(tree.kind, np.uint16, n).astype(np.int32)
    # ERROR (65535) and any id past the grammar's kinds -> the grammar's ERROR id; then the
    # grammar's block of the shared vocabulary.
    np.minimum(kind, num_node_types(lang) - 1, out=kind)
    kind += node_type_offset(lang)
    start = np.frombuffer(tree.start, np.uint32, n)
    span = np.empty((n, 2), dtype=np.int64)
    span[:, 0] = start
    span[:, 1] = np.frombuffer(tree.end, np.uint32, n)
    # NCS: the leaves in source order (ties: BFS order), each to the next.
    leaf = np.flatnonzero(np.frombuffer(tree.nchild, np.int32, n) == 0)
    leaf = leaf[np.argsort(start[leaf], kind="stable")]
    cfg, dfg = flow_arrays(tree, n)
    sizes = [max(n - 1, 0), max(len(leaf) - 1, 0), len(cfg), len(dfg)]  # AST, NCS, CFG, DFG, in this order
    n_ast, n_tree = sizes[0], sizes[0] + sizes[1]
    edge_index = np.empty((2, sum(sizes)), dtype=np.int64)
    edge_index[0, :n_ast] = np.frombuffer(tree.parent, np.int32, n)[1:]  # AST: parent -> node i
    edge_index[1, :n_ast] = np.arange(1, n_ast + 1)
    edge_index[0, n_ast:n_tree] = leaf[:-1]
    edge_index[1, n_ast:n_tree] = leaf[1:]
    edge_index[:, n_tree:n_tree + sizes[2]] = cfg.T
    edge_index[:, n_tree + sizes[2]:] = dfg.T
    edge_type = np.repeat(np.array([EDGE_AST, EDGE_NCS, EDGE_CFG, EDGE_DFG], dtype=np.int8), sizes)
    return FunctionGraph(
        node_type=kind,
        token_id=np.frombuffer(tree.bucket, np.int32, n).copy(),
        edge_index=edge_index,
        edge_type=edge_type,
        span=span,
        tier=TIER_PARTIAL if tree.has_error else TIER_FULL,
        truncated=tree.count > max_nodes,
    )
