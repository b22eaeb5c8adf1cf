"""Statement-level CFG and reaching-definitions DFG (`streamguard.data.flow`).

CFG edges are compared as (source statement, target statement) text prefixes; DFG edges as
(`name@line` of the definition, `name@line` of the use), lines counted from 1.
"""

import random
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamguard.data.flow import _tables, flow_edges, identifier_roles
from streamguard.data.parse import (EDGE_AST, EDGE_CFG, EDGE_DFG, EDGE_KINDS, EDGE_NCS, _language, _parser,
                                    parse_function, syntax_tree)


def _tree(code, lang="c"):
    """(SyntaxTree from the C walk, the Python binding's nodes in BFS order) of one source."""
    data = code.encode() if isinstance(code, str) else code
    root = _parser(lang).parse(data).root_node
    nodes, queue = [], deque([root])
    while queue:
        node = queue.popleft()
        nodes.append(node)
        queue.extend(node.children)
    return syntax_tree(data, lang), nodes


def _text(node) -> str:
    return " ".join(node.text.decode(errors="replace").split())


def _label(node) -> str:
    return f"{node.text.decode()}@{node.start_point[0] + 1}"


def cfg_of(code, lang="c"):
    tree, nodes = _tree(code, lang)
    cfg, _ = flow_edges(tree)
    return [(_text(nodes[a]), _text(nodes[b])) for a, b in cfg]


def dfg_of(code, lang="c"):
    tree, nodes = _tree(code, lang)
    _, dfg = flow_edges(tree)
    return sorted((_label(nodes[a]), _label(nodes[b])) for a, b in dfg)


def assert_cfg(code, expected, lang="c"):
    """Every actual edge matches exactly one expected (prefix, prefix) pair, and vice versa."""
    actual = cfg_of(code, lang)
    matched = []
    for a, b in actual:
        hits = [e for e in expected if a.startswith(e[0]) and b.startswith(e[1])]
        assert len(hits) == 1, f"edge {a!r} -> {b!r} matches {hits} in {expected}"
        matched.append(hits[0])
    missing = set(expected) - set(matched)
    assert not missing, f"missing edges {missing}; got {actual}"
    assert len(actual) == len(expected), actual


# --------------------------------------------------------------------------------- CFG


def test_straight_line():
    assert_cfg("""
int f(int a) {
  int x = a;
  x = x + 1;
  g(x);
  return x;
}""", [("int f(", "int x = a"), ("int x = a", "x = x + 1"), ("x = x + 1", "g(x)"),
      ("g(x)", "return x")])


def test_if_without_else_falls_through():
    assert_cfg("""
void f(int a) {
  a = 1;
  if (a > 0)
    a = 2;
  g(a);
}""", [("void f(", "a = 1"), ("a = 1", "if (a > 0)"), ("if (a > 0)", "a = 2"),
      ("if (a > 0)", "g(a)"), ("a = 2", "g(a)")])


def test_if_else_branches_join():
    assert_cfg("""
void f(int a) {
  if (a) {
    a = 1;
    h(a);
  } else {
    a = 2;
  }
  g(a);
}""", [("void f(", "if (a)"), ("if (a)", "a = 1"), ("a = 1", "h(a)"), ("if (a)", "a = 2"),
      ("h(a)", "g(a)"), ("a = 2", "g(a)")])


def test_else_if_chain():
    assert_cfg("""
void f(int a) {
  if (a == 1) x();
  else if (a == 2) y();
  else z();
  w();
}""", [("void f(", "if (a == 1)"), ("if (a == 1)", "x()"), ("if (a == 1)", "if (a == 2)"),
      ("if (a == 2)", "y()"), ("if (a == 2)", "z()"), ("x()", "w()"), ("y()", "w()"), ("z()", "w()")])


def test_while_with_break_and_continue():
    assert_cfg("""
void f(int n) {
  while (n > 0) {
    if (n == 5) break;
    if (n == 3) { n -= 2; continue; }
    n--;
  }
  done(n);
}""", [
        ("void f(", "while (n > 0)"),
        ("while (n > 0)", "if (n == 5)"),     # header -> body entry
        ("while (n > 0)", "done(n)"),         # header -> after the loop
        ("if (n == 5)", "break;"), ("if (n == 5)", "if (n == 3)"),
        ("break;", "done(n)"),                # break -> after the loop
        ("if (n == 3)", "n -= 2"), ("if (n == 3)", "n--"),
        ("n -= 2", "continue;"),
        ("continue;", "while (n > 0)"),       # continue -> header
        ("n--", "while (n > 0)"),             # body end -> header (back edge)
    ])


def test_for_loop_init_header_update():
    assert_cfg("""
int f(int n) {
  int s = 0;
  for (int i = 0; i < n; i++) {
    if (i == 2) continue;
    s += i;
  }
  return s;
}""", [
        ("int f(", "int s = 0"), ("int s = 0", "int i = 0"),
        ("int i = 0", "for ("),               # initializer -> header (condition test)
        ("for (", "if (i == 2)"), ("for (", "return s"),
        ("if (i == 2)", "continue;"), ("if (i == 2)", "s += i"),
        ("continue;", "i++"),                 # continue -> the update
        ("s += i", "i++"), ("i++", "for ("),  # body end -> update -> header
    ])


def test_infinite_for_leaves_only_by_break():
    assert_cfg("""
void f(void) {
  for (;;) {
    if (poll()) break;
  }
  done();
}""", [("void f(", "for (;;)"), ("for (;;)", "if (poll())"), ("if (poll())", "break;"),
      ("if (poll())", "for (;;)"), ("break;", "done()")])


def test_do_while_runs_body_first():
    assert_cfg("""
void f(int n) {
  start();
  do {
    n--;
    if (n == 7) continue;
    g(n);
  } while (n > 0);
  done();
}""", [
        ("void f(", "start()"),
        ("start()", "n--"),                   # body first
        ("n--", "if (n == 7)"), ("if (n == 7)", "continue;"), ("if (n == 7)", "g(n)"),
        ("continue;", "do {"), ("g(n)", "do {"),  # the do node is the condition test
        ("do {", "n--"),                      # condition -> body (back edge)
        ("do {", "done()"),
    ])


def test_switch_fallthrough_break_default():
    assert_cfg("""
void f(int a) {
  switch (a) {
  case 1:
    a = 10;
  case 2:
    a = 20;
    break;
  default:
    a = 30;
  }
  g(a);
}""", [
        ("void f(", "switch (a)"),
        ("switch (a)", "case 1"), ("switch (a)", "case 2"), ("switch (a)", "default"),
        ("case 1", "a = 10"), ("a = 10", "case 2"),  # no break: falls through
        ("case 2", "a = 20"), ("a = 20", "break;"), ("break;", "g(a)"),
        ("default", "a = 30"), ("a = 30", "g(a)"),
    ])


def test_switch_without_default_can_skip_and_return_ends_case():
    assert_cfg("""
int f(int a) {
  switch (a) {
  case 1:
    return 1;
  case 2:
    a++;
  }
  return a;
}""", [("int f(", "switch (a)"), ("switch (a)", "case 1"), ("switch (a)", "case 2"),
      ("switch (a)", "return a"), ("case 1", "return 1"), ("case 2", "a++"), ("a++", "return a")])


def test_goto_and_label():
    assert_cfg("""
void f(int a) {
  a = 0;
retry:
  a++;
  if (a < 3)
    goto retry;
  g(a);
}""", [("void f(", "a = 0"), ("a = 0", "retry:"), ("retry:", "a++"), ("a++", "if (a < 3)"),
      ("if (a < 3)", "goto retry"), ("if (a < 3)", "g(a)"), ("goto retry", "retry:")])


def test_return_in_the_middle_leaves_the_rest_unreachable():
    code = """
int f(int a) {
  if (a) return 1;
  return 2;
  a = 3;
  return a;
}"""
    assert_cfg(code, [("int f(", "if (a)"), ("if (a)", "return 1"), ("if (a)", "return 2"),
                      ("a = 3", "return a")])
    assert not [e for e in cfg_of(code) if e[1].startswith("a = 3")]  # no predecessor


def test_preprocessor_blocks_are_branches():
    assert_cfg("""
void f(void) {
  a();
#ifdef FAST
  b();
#else
  c();
#endif
  d();
#if DEBUG
  e();
#endif
  g();
}""", [("void f(", "a()"), ("a()", "b()"), ("a()", "c()"), ("b()", "d()"), ("c()", "d()"),
      ("d()", "e()"), ("d()", "g()"), ("e()", "g()")])


def test_cpp_range_for_and_try():
    assert_cfg("""
int f(std::vector<int> &v) {
  int s = 0;
  for (auto &x : v) {
    s += x;
  }
  try {
    check(s);
  } catch (const std::exception &e) {
    s = -1;
  }
  return s;
}""", [
        ("int f(", "int s = 0"), ("int s = 0", "for (auto &x : v)"),
        ("for (auto &x : v)", "s += x"), ("s += x", "for (auto &x : v)"),
        ("for (auto &x : v)", "try {"), ("try {", "check(s)"), ("try {", "catch ("),
        ("catch (", "s = -1"), ("check(s)", "return s"), ("s = -1", "return s"),
    ], lang="cpp")


# --------------------------------------------------------------------------------- DFG


def test_reassignment_kills_the_first_definition():
    assert dfg_of("""
int f(void) {
  int x = 1;
  x = 2;
  return x;
}""") == [("x@4", "x@5")]


def test_definitions_in_both_branches_reach_the_join():
    assert dfg_of("""
int f(int c) {
  int x;
  if (c)
    x = 1;
  else
    x = 2;
  return x;
}""") == [("c@2", "c@4"), ("x@5", "x@8"), ("x@7", "x@8")]


def test_loop_carried_definition_reaches_the_condition():
    assert dfg_of("""
int f(int n) {
  int s = 0;
  for (int i = 0;
       i < n;
       i++)
    s += i;
  return s;
}""") == sorted([
        ("n@2", "n@5"),
        ("i@4", "i@5"), ("i@6", "i@5"),    # the init and the loop-carried i++ reach i < n
        ("i@4", "i@6"),                    # i++ reads i (its own def reaching it is a self-loop: dropped)
        ("i@4", "i@7"), ("i@6", "i@7"),
        ("s@3", "s@7"), ("s@3", "s@8"), ("s@7", "s@8"),
    ])


def test_while_loop_carried_and_uninitialised_read():
    assert dfg_of("""
int f(int n) {
  int i;
  while (i < n)
    i++;
  return i;
}""") == sorted([("n@2", "n@4"), ("i@3", "i@4"), ("i@5", "i@4"), ("i@3", "i@5"),
                 ("i@3", "i@6"), ("i@5", "i@6")])


def test_parameters_are_defined_at_entry():
    assert dfg_of("""
int f(int *p,
      int n) {
  return p[n];
}""") == [("n@3", "n@4"), ("p@2", "p@4")]


def test_element_and_field_writes_are_uses_and_callees_are_not():
    assert dfg_of("""
void f(struct s *p, int i) {
  int buf[8];
  int t;
  buf[i] = 0;
  p->len = t;
  t += 1;
  memcpy(buf, p, t);
  int log = 0;
  log(t);
}""") == sorted([
        ("i@2", "i@5"), ("buf@3", "buf@5"),        # buf[i] = 0 reads buf and i, defines nothing
        ("p@2", "p@6"), ("t@4", "t@6"),            # p->len = t: p is read
        ("t@4", "t@7"),                             # compound assignment reads t ...
        ("buf@3", "buf@8"), ("p@2", "p@8"), ("t@7", "t@8"),  # ... and defines it
        ("t@7", "t@10"),                            # the callee `log` is not a use
    ])


def test_switch_and_goto_data_flow():
    assert dfg_of("""
int f(int a) {
  int r = 0;
  switch (a) {
  case 1: r = 1;
  case 2: r = 2; break;
  default: r = 3;
  }
again:
  if (r > 5) goto again;
  return r;
}""") == sorted([("a@2", "a@4"), ("r@6", "r@10"), ("r@7", "r@10"),
                 ("r@6", "r@11"), ("r@7", "r@11")])


def test_cpp_references_and_range_for():
    assert dfg_of("""
int f(std::vector<int> &v) {
  int s = 0;
  for (auto &x : v)
    s += x;
  return std::max(s, 0);
}""", lang="cpp") == sorted([("v@2", "v@4"), ("x@4", "x@5"), ("s@3", "s@5"), ("s@3", "s@6"),
                             ("s@5", "s@6")])


# ------------------------------------------------------------------------ robustness


@pytest.mark.timeout(120)
def test_deep_nesting_is_iterative():
    depth = 10_000
    for code, n_cfg in [
        ("void f(int a) {" + "{" * depth + "a = a + 1;" + "}" * depth + "}", 1),
        ("void f(int a) {" + "if (a) {" * depth + "a++;" + "}" * depth + "}", depth + 1),
        ("void f(int a) {" + "if (a) " * depth + "a++; }", depth + 1),
        ("void f(int a) {" + "while (a) " * depth + "a--; }", 2 * depth + 1),
        ("void f(int a) {" + "do " * depth + "a--;" + " while (a);" * depth + " }", 2 * depth + 1),
    ]:
        cfg, dfg = flow_edges(syntax_tree(code.encode()))
        assert len(cfg) == n_cfg and dfg
        g = parse_function(code)  # the integration too (its BFS keeps 4000 nodes)
        assert g.truncated and (g.edge_type == EDGE_AST).sum() == g.num_nodes - 1


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from(["c", "cpp"]))
def test_random_bytes_never_raise(data, lang):
    tree, nodes = _tree(data, lang)
    assert_same_tree(tree, nodes, lang)
    cfg, dfg = flow_edges(tree)
    assert all(0 <= a < len(nodes) and 0 <= b < len(nodes) for a, b in cfg + dfg)
    g = parse_function(data, lang=lang)
    assert g.edge_index.shape == (2, g.edge_type.shape[0])


REAL = """
static int decode(Ctx *s, const uint8_t *buf, int size) {
    int i, n = 0, ret;
    uint8_t *dst = s->out;
    if (!buf || size < 4)
        return AVERROR_INVALIDDATA;
    for (i = 0; i < size; i += 2) {
        switch (buf[i]) {
        case 0: n++; break;
        case 1: dst[n] = buf[i + 1];
        default: if (n > s->max) goto fail; continue;
        }
        while ((ret = get(s, n)) > 0) { n -= ret; if (!n) break; }
    }
    do { n--; } while (n > 0);
    return n;
fail:
    av_log(s, "fail %d", n);
    return -1;
}
"""


def test_truncated_and_broken_code_never_raises():
    rng = random.Random(0)
    code = REAL.encode()
    cuts = list(range(0, len(code), 7)) + [rng.randrange(len(code)) for _ in range(20)]
    for lang in ("c", "cpp"):
        for cut in cuts:
            for variant in (code[:cut], code[cut:], code[:cut] + b"@@ } { ;; ) (" + code[cut:]):
                tree, nodes = _tree(variant, lang)
                assert_same_tree(tree, nodes, lang)
                flow_edges(tree)
    assert cfg_of("int f( { return ;;; }}} @@@") is not None
    assert cfg_of("x = 1; y = x; if (y) goto out; out: return;")  # no function header


def test_truncated_tree_drops_edges_that_touch_nodes_past_the_cut():
    tree, nodes = _tree(REAL)
    cfg, dfg = flow_edges(tree)
    assert len(cfg) > 20 and len(dfg) > 20
    # A breadth-first prefix, as parse_function's truncation keeps.
    for keep in (40, 120, 250):
        pcfg, pdfg = flow_edges(tree, keep)
        assert all(a < keep and b < keep for a, b in pcfg + pdfg)
        assert set(pcfg) <= {(a, b) for a, b in cfg if a < keep and b < keep}
        assert len(pdfg) <= len(dfg)
        if keep < 250:
            assert len(pdfg) < len(dfg)
        if keep == 40:
            assert len(pcfg) < len(cfg)
    assert flow_edges(tree, len(nodes)) == (cfg, dfg) == flow_edges(tree, 10 * len(nodes))


# ----------------------------------------------------------------------- integration


def assert_same_tree(tree, nodes, lang):
    """The C walk's arrays describe the Python binding's tree, node for node, in the same order."""
    assert tree.count == len(nodes) == nodes[0].descendant_count
    assert tree.has_error == nodes[0].has_error
    index = {n.id: i for i, n in enumerate(nodes)}
    assert list(tree.kind) == [n.kind_id for n in nodes]
    assert list(tree.named) == [n.is_named for n in nodes]
    assert list(tree.start) == [n.start_byte for n in nodes]
    assert list(tree.end) == [n.end_byte for n in nodes]
    assert list(tree.nchild) == [n.child_count for n in nodes]
    assert list(tree.parent) == [-1] + [index[n.parent.id] for n in nodes[1:]]
    language = _language(lang)
    for i, n in enumerate(nodes):
        assert [tree.first[i] + k for k in range(n.child_count)] == [index[c.id] for c in n.children]
        fields = [language.field_id_for_name(n.field_name_for_child(k)) or 0 if n.field_name_for_child(k) else 0
                  for k in range(n.child_count)]
        assert [tree.field[tree.first[i] + k] for k in range(n.child_count)] == fields


def _query_roles(code: bytes, lang: str):
    """(defs, uses) by start byte from the identifier-role tree-sitter query."""
    import tree_sitter

    root = _parser(lang).parse(code).root_node
    caps = tree_sitter.QueryCursor(_tables(lang).query).captures(root)
    defs = {x.start_byte for x in caps.get("def", ())}
    rw = {x.start_byte for x in caps.get("rw", ())}
    skip = {x.start_byte for x in caps.get("skip", ())}
    uses = {x.start_byte for x in caps.get("id", ())} - skip - defs
    return defs | rw, uses


@pytest.mark.parametrize("lang, code", [("c", REAL), ("c", "int add(int a, int b) { return a + b; }"),
                                        ("cpp", REAL), ("c", "int f( { return ;;; }}} @@@"),
                                        ("cpp", "void g(std::vector<int> &v) { for (auto &x : v) { int y = x; x += y; } }"),
                                        ("c", "int f(int *p, int n) { int a[4], b = n; a[b] = *p; b++; p->x = b; }")])
def test_parse_function_flow_edges_and_the_role_query(lang, code):
    """parse_function's CFG/DFG edges are flow_edges' on the same tree; the identifier roles
    read from the arrays are those of the tree-sitter query stating the same rules."""
    g = parse_function(code, lang=lang)
    assert EDGE_KINDS == ("ast", "ncs", "cfg", "dfg") and (EDGE_CFG, EDGE_DFG) == (2, 3)
    tree, nodes = _tree(code, lang)
    assert_same_tree(tree, nodes, lang)
    cfg, dfg = flow_edges(tree)
    for kind, expected in ((EDGE_CFG, cfg), (EDGE_DFG, dfg)):
        got = g.edge_index[:, g.edge_type == kind].T.tolist()
        assert [tuple(e) for e in got] == expected
    defs, uses = identifier_roles(tree)
    assert ({d[1] for d in defs}, {u[1] for u in uses}) == _query_roles(code.encode(), lang)
    # AST and NCS edges are unchanged, and come first.
    n_ast = g.num_nodes - 1
    assert (g.edge_type[:n_ast] == EDGE_AST).all()
    n_ncs = int((g.edge_type == EDGE_NCS).sum())
    assert n_ncs == int((g.token_id > 0).sum()) - 1
    assert (np.diff(g.edge_type.astype(int)) >= 0).all()


def test_parse_function_flow_edges_respect_truncation():
    g = parse_function(REAL, max_nodes=150)
    assert g.truncated
    flow = g.edge_index[:, g.edge_type >= EDGE_CFG]
    assert flow.size and (flow < 150).all()
    full = parse_function(REAL)
    assert (full.edge_type == EDGE_DFG).sum() > (g.edge_type == EDGE_DFG).sum()
