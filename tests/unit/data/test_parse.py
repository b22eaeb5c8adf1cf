import numpy as np

from streamguard.data.parse import EDGE_AST, EDGE_NCS, TIER_FULL, TIER_PARTIAL, node_type_offset, node_type_vocab_size, num_node_types, parse_function, token_bucket

SRC = "int add(int a, int b) { if (a <= b) return a + b; return strcpy(a, b); }"


def test_ast_graph_shape_and_features():
    g = parse_function(SRC)
    assert g.tier == TIER_FULL and not g.truncated
    n = g.num_nodes
    ast = g.edge_index[:, g.edge_type == EDGE_AST]
    assert ast.shape == (2, n - 1)  # a tree: one parent edge per non-root node
    assert set(ast[1]) == set(range(1, n))
    ncs = g.edge_index[:, g.edge_type == EDGE_NCS]
    leaves = np.flatnonzero(g.token_id)
    assert ncs.shape[1] == len(leaves) - 1  # a chain through the leaves in source order
    assert (g.span[ncs[0], 0] < g.span[ncs[1], 0]).all()
    assert (g.node_type < num_node_types("c")).all()
    leaves = g.token_id > 0
    assert leaves.any() and (~leaves).any()
    # leaf text is hashed, so strcpy and the `<=` operator get stable ids
    texts = {SRC.encode()[s:e] for (s, e), leaf in zip(g.span, leaves) if leaf}
    assert b"strcpy" in texts and b"<=" in texts
    assert token_bucket(b"strcpy", 4096) in set(g.token_id)


def test_broken_code_is_partial_not_an_exception():
    g = parse_function("int f( { return ;;; }}} @@@")
    assert g.tier == TIER_PARTIAL
    assert (g.node_type < num_node_types("c")).all()


def test_deep_nesting_does_not_recurse_and_truncation_is_flagged():
    deep = "void f() {" + "{" * 5000 + "}" * 5000 + "}"
    g = parse_function(deep, max_nodes=300)
    assert g.num_nodes == 300 and g.truncated


def test_non_utf8_and_nul_bytes():
    g = parse_function(b"int f() { char *s = \"\xff\xfe\x00\"; return 0; }")
    assert g.num_nodes > 5


def test_cpp_node_types_have_their_own_block_of_the_shared_vocabulary():
    """C and C++ kind ids mean different things: C++ ids are shifted past the C block, and
    every id fits the embedding the manifest sizes (this crashed on Juliet's C++ functions)."""
    g = parse_function("class A { public: int f(std::vector<int>& v) { for (auto x : v) {} return 0; } };", lang="cpp")
    assert g.tier == TIER_FULL
    assert (g.node_type >= node_type_offset("cpp")).all()
    assert (g.node_type < node_type_vocab_size()).all()
    broken = parse_function("class { int f( ;; @@", lang="cpp")
    assert (broken.node_type < node_type_vocab_size()).all()
