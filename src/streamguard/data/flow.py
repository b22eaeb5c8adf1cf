"""Statement-level control flow (CFG) and reaching-definitions data flow (DFG) edges.

`flow_arrays(tree, n_kept)` takes the syntax tree of one function as breadth-first arrays
(`parse.SyntaxTree`, laid out by the C walk that `parse.parse_function` uses, so a node's tree
index is its graph index) and returns the CFG and DFG edges as [E, 2] arrays of graph node
indices, so they can be appended to the AST/NCS edges of a `FunctionGraph` (`flow_edges` gives
the same as lists of pairs).

Where the code is: the analysis runs in C (`flow()` in src/streamguard/data/_treewalk.c, one
call per function). This module holds its specification (this docstring), the grammar tables
it runs on (statement categories, identifier roles, field ids, built from the grammar's node
kind names by `_tables`) and the Python entry points. The C enums must keep the order of the
`_SIMPLE ...` and `_R_SKIP ...` codes below.

CFG
    Nodes are the statement nodes themselves (expression_statement, declaration, return, break,
    continue, goto, labeled_statement, case_statement, and the header nodes of if / while / do /
    for / for_range_loop / switch / try). Compound statements, `else` clauses, attributed
    statements and ERROR nodes are transparent: they are entered at their first statement.
    Two extra kinds of node keep the analysis exact:

    * the `function_definition` node is the entry: it defines the parameters and flows to the
      first statement of the body;
    * a `for` loop is split as in a compiler: the initializer node (the `declaration` or
      expression in `for (init; ...)`) -> the for_statement node (the condition test) -> body
      -> the update expression node -> the for_statement node (back edge); `continue` goes to
      the update. `for (;;)` has no header -> exit edge, so only `break` leaves it. (A bare
      identifier as initializer or update defines nothing and stays part of the header.)

    Edges: sequential flow; if -> first statement of the then branch and of the else branch (or
    -> the statement after the if without else); loops: header -> body entry, body end ->
    header, header -> after; do-while: body first, the do_statement node is the condition test
    (body end -> do -> body entry, do -> after); break -> after the innermost loop/switch;
    continue -> innermost loop header (update of a for, condition of a do); return/throw -> no
    successor; switch -> every case/default label, case bodies fall through to the next label
    unless they end in break/return/goto, switch -> after when there is no default; goto L ->
    the labeled_statement L. Code after return/break/goto has no predecessor. `#if/#ifdef`
    blocks inside a body are branches: both the `#if` part and the `#else`/`#elif` part are
    possible (without `#else`, the block may also be skipped). C++ try: try -> body entry and
    -> each catch clause (which defines its parameter); catch bodies and the try body flow to
    the statement after the try.

DFG (reaching definitions, def -> use)
    Variables are keyed by their name (no scope resolution: a shadowing declaration in a nested
    block kills the outer definitions, as if the two variables were one).

    Definitions (at the identifier being defined):
    * every declarator of a declaration, *with or without initialiser*: `int x;` counts, so a
      read of an uninitialised variable shows up as a def -> use edge from the bare declaration
      (the CWE-457 pattern) and arrays / structs that are only written element- or field-wise
      (`char buf[8]; buf[i] = c; use(buf)`) still link their uses to the declaration;
    * plain and compound assignments whose left side is an identifier (`x = ...`, `x += ...`);
    * `x++`, `--x`;
    * function parameters (defined at the function_definition entry node) and C++ catch
      parameters and range-for variables;
    * for-loop initialisers (as any declaration or assignment, in their own node).

    Uses: every other `identifier` inside a statement's own expressions (conditions, right-hand
    sides, call arguments, array bases and indices, `*p`, the base `p` of `p->f` / `s.f`,
    return values, case values); a compound assignment or `++`/`--` target is both a use and a
    def. Not uses: the callee name of a call (`f` in `f(x)`; but `(*fp)(x)` uses `fp`), field
    names, type names, labels, C++ qualified names (`ns::x`). Writes through a field or
    element (`p->f = x`, `a[i] = x`, `*p = x`) are uses of `p` / `a`, `i` and not definitions:
    they do not kill earlier definitions of `p` or `a`. Passing `&x` to a call is a use only.

    All uses of a statement see the definitions reaching the statement's entry (so `x = x + 1`
    links the right-hand `x` to the previous definition); all definitions of a statement reach
    its exit (in `x = 1, x = 2` both do). Self-loops (`i++` in a loop reaching itself) are
    dropped.

Robustness and cost
    Everything is iterative (an explicit work stack, a worklist; no recursion): 10,000-deep
    nesting is fine. ERROR / MISSING nodes never raise: unknown node kinds are skipped, ERROR
    nodes are transparent containers, so broken code (or a bare list of statements without a
    function header) just yields fewer edges. The work is linear in the tree plus the fixpoint,
    done in C over the tree's arrays; no Python object is made per node. Pathological inputs
    are bounded deterministically: the fixpoint has a work cap (200 x (nodes + edges) + 100,000
    64-bit word operations), at most 4 def -> use pairs per identifier (+ 1,024) are returned
    (real functions have fewer than 1), and an analysis whose bit vectors would pass 64 MiB
    (only with a max_nodes far above the default 4,000) raises MemoryError, which `data prepare`
    counts as a failed sample.

Graph truncation
    The graph keeps a breadth-first prefix of the tree (its first n_kept nodes). Edges with an
    end outside it are dropped, and a statement outside it is analysed as one opaque node (a
    breadth-first prefix keeps nothing below it) that lets all definitions through. The CFG
    edges between kept statements are then a subset of the exact ones (a few are lost, mostly
    switch -> after when the case labels are below the cut-off: a default is assumed), and as
    a definition below the cut-off does not kill older ones, the DFG may hold a few extra
    def -> use edges.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from streamguard.data import _treewalk

# Statement categories (dispatch codes).
(_SIMPLE, _RETURN, _BREAK, _CONTINUE, _GOTO, _BLOCK, _IF, _WHILE, _DO, _FOR, _FOR_RANGE, _SWITCH,
 _CASE, _LABELED, _TRY, _PREPROC, _FUNCTION) = range(17)

_KINDS = {
    "expression_statement": _SIMPLE, "declaration": _SIMPLE, "co_yield_statement": _SIMPLE,
    "seh_leave_statement": _SIMPLE,
    "return_statement": _RETURN, "throw_statement": _RETURN, "co_return_statement": _RETURN,
    "break_statement": _BREAK, "continue_statement": _CONTINUE, "goto_statement": _GOTO,
    # transparent containers: visit the statements among their named children, in order
    "compound_statement": _BLOCK, "else_clause": _BLOCK, "attributed_statement": _BLOCK,
    "translation_unit": _BLOCK, "ERROR": _BLOCK, "preproc_else": _BLOCK,
    "if_statement": _IF, "while_statement": _WHILE, "do_statement": _DO, "for_statement": _FOR,
    "for_range_loop": _FOR_RANGE, "switch_statement": _SWITCH, "case_statement": _CASE,
    "labeled_statement": _LABELED, "try_statement": _TRY, "seh_try_statement": _TRY,
    "preproc_if": _PREPROC, "preproc_ifdef": _PREPROC, "preproc_elif": _PREPROC,
    "preproc_elifdef": _PREPROC,
    "function_definition": _FUNCTION,
}
_HANDLER_CLAUSES = frozenset({"catch_clause", "seh_except_clause", "seh_finally_clause"})
_ERROR_KIND_ID = 65535  # tree-sitter's kind id for ERROR nodes

# Identifier roles, decided by the parent node (the C flow() applies them to the tree arrays; the
# tree-sitter query `_Tables.query` states the same rules, and the tests hold them equal):
#   skip     the callee of a call, the parts of a C++ qualified name / template function name:
#            neither use nor def
#   def      a declarator (first child of init/array/function declarators; the identifier of a
#            pointer / reference / parenthesized / structured-binding / variadic declarator, of a
#            parameter, of a K&R parameter list; a declaration's or range-for's declarator, i.e.
#            not the identifier after `=` / `:`), the left side of a plain `=`: written only
#   rw       the left side of a compound assignment, the operand of ++/--: read and written
#   use      every other identifier
_R_SKIP, _R_DEF, _R_RW, _R_DEF_FIRST, _R_DEF_UNLESS_VALUE, _R_ASSIGN = range(6)
_PARENT_ROLES = {
    "call_expression": _R_SKIP, "qualified_identifier": _R_SKIP, "template_function": _R_SKIP,
    "update_expression": _R_RW,
    "init_declarator": _R_DEF_FIRST, "array_declarator": _R_DEF_FIRST,
    "function_declarator": _R_DEF_FIRST,
    "pointer_declarator": _R_DEF, "parameter_declaration": _R_DEF, "parenthesized_declarator": _R_DEF,
    "parameter_list": _R_DEF, "reference_declarator": _R_DEF,
    "structured_binding_declarator": _R_DEF, "variadic_declarator": _R_DEF,
    "declaration": _R_DEF_UNLESS_VALUE, "optional_parameter_declaration": _R_DEF_UNLESS_VALUE,
    "for_range_loop": _R_DEF_UNLESS_VALUE,
    "assignment_expression": _R_ASSIGN,
}
_COMPOUND_OPS = ("+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=")
# `id` captures every identifier; the others name the roles (a node may be in `id` and one more).
_QUERY_PATTERNS = {
    "call_expression": "(call_expression function: (identifier) @skip)",
    "qualified_identifier": "(qualified_identifier (identifier) @skip)",
    "template_function": "(template_function (identifier) @skip)",
    "update_expression": "(update_expression (identifier) @rw)",
    "init_declarator": "(init_declarator declarator: (identifier) @def)",
    "array_declarator": "(array_declarator declarator: (identifier) @def)",
    "function_declarator": "(function_declarator declarator: (identifier) @def)",
    "pointer_declarator": "(pointer_declarator (identifier) @def)",
    "parameter_declaration": "(parameter_declaration (identifier) @def)",
    "parenthesized_declarator": "(parenthesized_declarator (identifier) @def)",
    "parameter_list": "(parameter_list (identifier) @def)",
    "reference_declarator": "(reference_declarator (identifier) @def)",
    "structured_binding_declarator": "(structured_binding_declarator (identifier) @def)",
    "variadic_declarator": "(variadic_declarator (identifier) @def)",
    "declaration": "(declaration declarator: (identifier) @def)",
    "optional_parameter_declaration": "(optional_parameter_declaration declarator: (identifier) @def)",
    "for_range_loop": "(for_range_loop declarator: (identifier) @def)",
    "assignment_expression": (
        '(assignment_expression left: (identifier) @def operator: "=")\n'
        "(assignment_expression left: (identifier) @rw operator: ["
        + " ".join(f'"{op}"' for op in _COMPOUND_OPS) + "])"),
}


_FIELDS = ("condition", "consequence", "alternative", "body", "initializer", "update", "value",
           "label", "parameters", "declarator")


class _Tables(NamedTuple):
    """A grammar's tables for the C analysis: 65536-entry lookup tables by kind id, namely
    category (255: not a statement), parent role (255: none) and flags (1 clause,
    2 function_declarator, 4 value token `=`/`:`, 8 plain `=`); the field ids in _FIELDS
    order; the kind id of `identifier`; and the same roles as a tree-sitter query (the
    tests cross-check the C roles with it)."""
    categories: bytes
    roles: bytes
    flags: bytes
    fields: tuple
    identifier: int
    query: object


@lru_cache(maxsize=None)
def _tables(lang: str) -> _Tables:
    import tree_sitter

    from streamguard.data.parse import _language

    language = _language(lang)
    kinds: dict[int, int] = {_ERROR_KIND_ID: _BLOCK}
    clauses, fdecl, value_tokens, plain_assign = set(), set(), set(), set()
    parent_roles: dict[int, int] = {}
    present = set()
    for kid in range(language.node_kind_count):
        name = language.node_kind_for_id(kid)
        if not language.node_kind_is_named(kid):
            if name == "=":
                plain_assign.add(kid)
                value_tokens.add(kid)
            elif name == ":":
                value_tokens.add(kid)
            continue
        if name in _KINDS:
            kinds[kid] = _KINDS[name]
        elif name in _HANDLER_CLAUSES:
            clauses.add(kid)
        if name == "function_declarator":
            fdecl.add(kid)
        if name in _PARENT_ROLES:
            parent_roles[kid] = _PARENT_ROLES[name]
            present.add(name)
    # Only the patterns this grammar allows (C has no reference_declarator, C++ no K&R
    # parameter names); a parent whose pattern is impossible gets no role either.
    patterns = ["(identifier) @id"]
    for name, pattern in _QUERY_PATTERNS.items():
        if name not in present:
            continue
        try:
            tree_sitter.Query(language, pattern)
        except tree_sitter.QueryError:
            parent_roles = {k: r for k, r in parent_roles.items()
                            if language.node_kind_for_id(k) != name}
            continue
        patterns.append(pattern)
    source = "\n".join(patterns)
    # A field missing from a grammar maps to id 0, which no child carries.
    fields = tuple(language.field_id_for_name(f) or 0 for f in _FIELDS)
    categories, roles, flags = bytearray(b"\xff" * 65536), bytearray(b"\xff" * 65536), bytearray(65536)
    for kid, category in kinds.items():
        categories[kid] = category
    for kid, role in parent_roles.items():
        roles[kid] = role
    for bit, ids in ((1, clauses), (2, fdecl), (4, value_tokens), (8, plain_assign)):
        for kid in ids:
            flags[kid] |= bit
    return _Tables(bytes(categories), bytes(roles), bytes(flags), fields,
                   language.id_for_node_kind("identifier", True), tree_sitter.Query(language, source))


def _flow(tree, n_kept: int | None, roles_only: bool = False):
    """One call of the C analysis (`flow()` in _treewalk.c) on `tree` with its grammar's tables."""
    if n_kept is None or n_kept > tree.count:
        n_kept = tree.count
    tb = _tables(tree.lang)
    return _treewalk.flow(tree.count, n_kept, tree.kind, tree.named, tree.field, tree.parent, tree.first,
                          tree.nchild, tree.start, tree.end, tb.categories, tb.roles, tb.flags, tb.fields,
                          tb.identifier, tree.source, roles_only)


def flow_arrays(tree, n_kept: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cfg, dfg) edges as int32 arrays of shape [E, 2] (src, dst), sorted and duplicate-free,
    of tree indices, which are graph indices.

    tree: a `parse.SyntaxTree`, the whole tree-sitter tree of ONE function's source in
    breadth-first order (its root may hold a function_definition, or just statements / broken
    code when the parse failed); its `lang` picks the grammar tables.
    n_kept: the graph keeps the first n_kept nodes (a breadth-first prefix; default: all);
    edges touching a node at or past n_kept are dropped, and definitions there are not seen.
    See the module docstring for what the edges mean."""
    cfg, dfg = _flow(tree, n_kept)
    return np.frombuffer(cfg, np.int32).reshape(-1, 2), np.frombuffer(dfg, np.int32).reshape(-1, 2)


def identifier_roles(tree, n_kept: int | None = None):
    """(defs, uses): the kept identifier leaves as (owner CFG node or -1, start_byte, end_byte,
    tree index), in tree order; a compound assignment / ++ target is in both (for tests and
    debugging: `flow_arrays` uses them internally)."""
    return _flow(tree, n_kept, roles_only=True)


def flow_edges(tree, n_kept: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """`flow_arrays` as two sorted lists of (src, dst) pairs."""
    cfg, dfg = flow_arrays(tree, n_kept)
    return list(map(tuple, cfg.tolist())), list(map(tuple, dfg.tolist()))
