"""Statement-level control flow (CFG) and reaching-definitions data flow (DFG) edges.

`flow_edges(root, index_of, lang)` takes the tree-sitter tree of one function (the same tree
`parse.parse_function` walks) and returns `(cfg_edges, dfg_edges)` as pairs of graph node
indices, so they can be appended to the AST/NCS edges of a `FunctionGraph`.

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
    function header) just yields fewer edges. Only statement nodes are visited in Python; the
    identifiers come either from one tree-sitter query run over the tree, or (`ast=`, as
    `parse_function` does) from the arrays of the walk that built the graph, which is cheaper.
    Pathological inputs are bounded deterministically: the fixpoint has a work cap and at most
    4 def -> use pairs per identifier are returned (real functions have fewer than 1).

Graph truncation
    Edges with an end outside `index_of` are dropped. When the graph is truncated (the tree has
    more nodes than index_of), a statement outside index_of is analysed as one opaque node (a
    breadth-first prefix keeps nothing below it) that lets all definitions through. The CFG
    edges between kept statements are then a subset of the exact ones (a few are lost, mostly
    switch -> after when the case labels are below the cut-off: a default is assumed), and as
    a definition below the cut-off does not kill older ones, the DFG may hold a few extra
    def -> use edges.
"""

from __future__ import annotations

from bisect import bisect_right
from functools import lru_cache
from heapq import heappop, heappush
from operator import itemgetter
from typing import NamedTuple, Sequence

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

# Identifier roles, decided by the parent node (the same rules in the query, for a bare tree,
# and in `_roles_from_arrays`, for the arrays of a breadth-first walk):
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


class AstArrays(NamedTuple):
    """What a breadth-first walk like `parse_function`'s already knows about the kept nodes (graph
    index = BFS order), so that `flow_edges` need not look for identifiers in the tree again."""
    kind: Sequence[int]               # graph index -> kind_id
    span: Sequence[tuple[int, int]]   # graph index -> (start_byte, end_byte)
    edge_src: Sequence[int]           # the parent of node i >= 1 is edge_src[i - 1]
    identifiers: Sequence[int]        # graph indices of the `identifier` leaves
    source: bytes                     # the parsed bytes (spans index into them)


# Bounds for pathological inputs (never reached by real functions; they keep the cost linear).
_RD_WORK_PER_EDGE, _RD_WORK_MIN = 200, 100_000     # fixpoint work, in 64-bit word operations
_MAX_PAIRS_PER_IDENTIFIER, _MAX_PAIRS_MIN = 4, 1024  # def -> use pairs returned (real: < 1)

_region_key = itemgetter(0, 1, 2)

# Work-stack actions (tuples); plain tree-sitter nodes on the stack mean "visit this statement".
(_A_IF_ELSE, _A_IF_NOELSE, _A_JOIN, _A_LOOP_END, _A_FOR_END, _A_DO_END, _A_SWITCH_END,
 _A_ACC_START, _A_CATCH, _A_ACC_ADD, _A_TRY_END, _A_PP_END, _A_FUNC_END) = range(13)

_FIELDS = ("condition", "consequence", "alternative", "body", "initializer", "update", "value",
           "label", "parameters", "declarator")


class _Tables(NamedTuple):
    kinds: dict          # kind_id -> statement category
    clauses: frozenset   # kind ids of catch / __except / __finally clauses
    function_declarator: frozenset
    query: object        # identifier-role query
    fields: tuple        # field ids, in _FIELDS order
    parent_roles: dict   # kind_id of an identifier's parent -> _R_* role
    value_tokens: frozenset  # kind ids of `=` and `:` (before a value / range, not a declarator)
    plain_assign: frozenset  # kind ids of `=`


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
    return _Tables(kinds, frozenset(clauses), frozenset(fdecl), tree_sitter.Query(language, source),
                   fields, parent_roles, frozenset(value_tokens), frozenset(plain_assign))


@lru_cache(maxsize=None)
def index_kinds(lang: str = "c") -> tuple[frozenset, frozenset]:
    """(kinds, parent_kinds): the only nodes `flow_edges` looks up in index_of are inner nodes
    (never leaves) of a kind in `kinds` (statements and their containers, function definitions,
    catch clauses) and children of a node of a kind in `parent_kinds` (for loops: their
    initializer and update; parent_kinds is a subset of kinds). A walk that passes `ast` may
    index just those, which is cheaper than every node."""
    from streamguard.data.parse import _language

    language = _language(lang)
    tables = _tables(lang)
    fors = frozenset(k for k in range(language.node_kind_count)
                     if language.node_kind_is_named(k) and language.node_kind_for_id(k) == "for_statement")
    return frozenset(tables.kinds) | tables.clauses, fors


def _build_cfg(root, tables: _Tables, index_of: dict, truncated: bool):
    """Iterative CFG construction over the statement structure (expressions are not entered).

    Returns (ts_ids, edges, regions): ts_ids[k] is the tree-sitter id of CFG node k; edges a set
    of (k, k') pairs; regions a list of (start_byte, end_byte, k, node): byte ranges (inside
    `node`) whose identifiers belong to CFG node k: a statement's own expressions (a whole simple
    statement, the condition of an if/while/switch, a for's init/condition/update, parameters).
    Regions never overlap: nested statements are never inside them.

    With `truncated`, a statement missing from index_of becomes one opaque node (its subtree
    holds no kept node, so nothing inside it could be an edge end)."""
    (f_cond, f_cons, f_alt, f_body, f_init, f_upd, f_value, f_label, f_params,
     f_decl) = tables.fields
    kinds, clause_kinds, fdecl_kinds = tables.kinds, tables.clauses, tables.function_declarator
    ts_ids: list[int] = []
    regions: list[tuple] = []
    edges: set = set()
    add_edge = edges.add
    labels: dict[bytes, int] = {}
    gotos: list[tuple[int, bytes]] = []
    brk: list[list[int]] = []    # per enclosing loop/switch: its break statements
    cont: list[int] = []         # per enclosing loop: the continue target
    switches: list[list] = []    # per enclosing switch: [switch node, has_default]
    saved: list[list[int]] = []  # saved frontiers
    cur: list[int] = []          # frontier: the nodes that flow into the next statement
    stack: list = [root]
    get_kind = kinds.get

    while stack:
        item = stack.pop()
        if item.__class__ is tuple:
            op = item[0]
            if op == _A_JOIN:
                cur = saved.pop() + cur
            elif op == _A_IF_ELSE:
                saved.append(cur)
                cur = [item[1]]
                stack.append((_A_JOIN,))
                stack.append(item[2])
            elif op == _A_IF_NOELSE:
                cur = cur + [item[1]]
            elif op == _A_LOOP_END:  # while / range-for: body end -> header; header -> after
                h = item[1]
                for p in cur:
                    add_edge((p, h))
                cur = [h] + brk.pop()
                cont.pop()
            elif op == _A_FOR_END:
                h, u, has_cond = item[1], item[2], item[3]
                back = h if u < 0 else u
                for p in cur:
                    add_edge((p, back))
                if u >= 0:
                    add_edge((u, h))
                cur = ([h] if has_cond else []) + brk.pop()
                cont.pop()
            elif op == _A_DO_END:
                d = item[1]
                for p in cur:
                    add_edge((p, d))
                cur = [d] + brk.pop()
                cont.pop()
            elif op == _A_SWITCH_END:
                s, has_default = switches.pop()
                cur = cur + brk.pop()
                if not has_default:
                    cur.append(s)
            elif op == _A_ACC_START:
                saved.append(cur)
                cur = []
            elif op == _A_CATCH:
                t, clause = item[1], item[2]
                c = len(ts_ids)
                ts_ids.append(clause.id)
                add_edge((t, c))
                params = clause.child_by_field_id(f_params)
                if params is not None:
                    regions.append((params.start_byte, params.end_byte, c, params))
                cur = [c]
                stack.append((_A_ACC_ADD,))
                body = clause.child_by_field_id(f_body)
                if body is not None:
                    stack.append(body)
            elif op == _A_ACC_ADD:
                saved[-1] = saved[-1] + cur
                cur = []
            elif op == _A_TRY_END:
                cur = saved.pop() + cur
            elif op == _A_PP_END:
                entry = saved.pop()
                alt = item[1]
                if alt is None:
                    cur = cur + entry  # the whole #if block may be compiled out
                else:
                    saved.append(cur)
                    cur = entry
                    stack.append((_A_JOIN,))
                    stack.append(alt)
            elif op == _A_FUNC_END:
                cur = saved.pop()
            continue

        node = item
        k = get_kind(node.kind_id)
        if k is None:
            continue  # not a statement: expression fragment, comment, preproc_def, ...
        if truncated and node.id not in index_of:
            if not node.child_count:
                continue  # a leaf (an empty ERROR) holds no statement
            i = len(ts_ids)
            ts_ids.append(node.id)
            for p in cur:
                add_edge((p, i))
            if k == _CASE and switches:  # reached from the switch; it may be the default
                add_edge((switches[-1][0], i))
                switches[-1][1] = True
            cur = [i]
            continue
        if k == _SIMPLE:  # the most common case first
            i = len(ts_ids)
            ts_ids.append(node.id)
            for p in cur:
                add_edge((p, i))
            regions.append((node.start_byte, node.end_byte, i, node))
            cur = [i]
            continue
        if k == _BLOCK:
            children = node.named_children
            children.reverse()
            stack.extend(children)
            continue
        if k == _PREPROC:
            alt = node.child_by_field_id(f_alt)
            saved.append(cur)
            stack.append((_A_PP_END, alt))
            children = node.named_children
            children.reverse()
            if alt is not None:
                aid = alt.id
                children = [c for c in children if c.id != aid]
            stack.extend(children)
            continue

        # Every other category is a CFG node of its own, entered from the frontier (except the
        # do node, the condition test after the body, and a function's entry node).
        i = len(ts_ids)
        ts_ids.append(node.id)
        if k != _DO and k != _FUNCTION:
            for p in cur:
                add_edge((p, i))

        if k == _IF:
            cond = node.child_by_field_id(f_cond)
            if cond is not None:
                regions.append((cond.start_byte, cond.end_byte, i, cond))
            cur = [i]
            alt = node.child_by_field_id(f_alt)
            stack.append((_A_IF_NOELSE, i) if alt is None else (_A_IF_ELSE, i, alt))
            cons = node.child_by_field_id(f_cons)
            if cons is not None:
                stack.append(cons)
        elif k == _RETURN:
            regions.append((node.start_byte, node.end_byte, i, node))
            cur = []
        elif k == _BREAK:
            if brk:
                brk[-1].append(i)
            cur = []
        elif k == _CONTINUE:
            if cont:
                add_edge((i, cont[-1]))
            cur = []
        elif k == _GOTO:
            label = node.child_by_field_id(f_label)
            if label is not None:
                gotos.append((i, label.text))
            cur = []
        elif k == _WHILE:
            cond = node.child_by_field_id(f_cond)
            if cond is not None:
                regions.append((cond.start_byte, cond.end_byte, i, cond))
            brk.append([])
            cont.append(i)
            cur = [i]
            stack.append((_A_LOOP_END, i))
            body = node.child_by_field_id(f_body)
            if body is not None:
                stack.append(body)
        elif k == _FOR:
            init = node.child_by_field_id(f_init)
            cond = node.child_by_field_id(f_cond)
            upd = node.child_by_field_id(f_upd)
            h = i
            # An initializer / update that is a bare leaf (`for (i; ...)`) defines nothing: it
            # stays in the header's region instead of becoming a node (CFG nodes are never
            # leaves, see flow_edges' `ast`).
            if init is not None and init.child_count == 0:
                regions.append((init.start_byte, init.end_byte, h, init))
                init = None
            if init is not None:  # node i becomes the initializer, the header comes next
                ts_ids[i] = init.id
                regions.append((init.start_byte, init.end_byte, i, init))
                h = len(ts_ids)
                ts_ids.append(node.id)
                add_edge((i, h))
            if cond is not None:
                regions.append((cond.start_byte, cond.end_byte, h, cond))
            u = -1
            if upd is not None and upd.child_count == 0:
                regions.append((upd.start_byte, upd.end_byte, h, upd))
                upd = None
            if upd is not None:
                u = len(ts_ids)
                ts_ids.append(upd.id)
                regions.append((upd.start_byte, upd.end_byte, u, upd))
            brk.append([])
            cont.append(h if u < 0 else u)
            cur = [h]
            stack.append((_A_FOR_END, h, u, cond is not None))
            body = node.child_by_field_id(f_body)
            if body is not None:
                stack.append(body)
        elif k == _DO:
            # The do node is the condition test. It joins the frontier, so it also becomes a
            # predecessor of the body entry (the back edge).
            cond = node.child_by_field_id(f_cond)
            if cond is not None:
                regions.append((cond.start_byte, cond.end_byte, i, cond))
            brk.append([])
            cont.append(i)
            cur = cur + [i]
            stack.append((_A_DO_END, i))
            body = node.child_by_field_id(f_body)
            if body is not None:
                stack.append(body)
        elif k == _SWITCH:
            cond = node.child_by_field_id(f_cond)
            if cond is not None:
                regions.append((cond.start_byte, cond.end_byte, i, cond))
            brk.append([])
            switches.append([i, False])
            cur = []  # statements before the first label are unreachable
            stack.append((_A_SWITCH_END,))
            body = node.child_by_field_id(f_body)
            if body is not None:
                if truncated and body.id not in index_of:
                    # An opaque body (below the graph's cut-off): reached from the switch; its
                    # unseen labels may include a default.
                    b = len(ts_ids)
                    ts_ids.append(body.id)
                    add_edge((i, b))
                    switches[-1][1] = True
                    cur = [b]
                else:
                    stack.append(body)
        elif k == _CASE:
            value = node.child_by_field_id(f_value)
            if switches:
                sw = switches[-1]
                add_edge((sw[0], i))
                if value is None:
                    sw[1] = True
            if value is not None:
                regions.append((value.start_byte, value.end_byte, i, value))
            cur = [i]
            children = node.named_children
            children.reverse()
            stack.extend(children)  # the value is not a statement kind: skipped
        elif k == _LABELED:
            label = node.child_by_field_id(f_label)
            if label is not None:
                labels[label.text] = i
            cur = [i]
            children = node.named_children
            children.reverse()
            stack.extend(children)
        elif k == _FOR_RANGE:
            body = node.child_by_field_id(f_body)
            end = body.start_byte if body is not None else node.end_byte
            regions.append((node.start_byte, end, i, node))
            brk.append([])
            cont.append(i)
            cur = [i]
            stack.append((_A_LOOP_END, i))
            if body is not None:
                stack.append(body)
        elif k == _TRY:
            cur = [i]
            stack.append((_A_TRY_END,))
            clauses = [c for c in node.named_children if c.kind_id in clause_kinds]
            clauses.reverse()
            for clause in clauses:
                stack.append((_A_CATCH, i, clause))
            stack.append((_A_ACC_START,))
            body = node.child_by_field_id(f_body)
            if body is not None:
                stack.append(body)
        elif k == _FUNCTION:
            d = node.child_by_field_id(f_decl)
            for _ in range(64):  # pointer / parenthesized declarators around the name
                if d is None or d.kind_id in fdecl_kinds:
                    break
                d = d.child_by_field_id(f_decl)
            params = d.child_by_field_id(f_params) if d is not None else None
            if params is not None:
                regions.append((params.start_byte, params.end_byte, i, params))
            saved.append(cur)  # self-contained: the outer frontier resumes after it
            cur = [i]
            stack.append((_A_FUNC_END,))
            body = node.child_by_field_id(f_body)
            if body is not None:
                stack.append(body)

    for g, name in gotos:
        target = labels.get(name)
        if target is not None:
            add_edge((g, target))
    return ts_ids, edges, regions


def _roles_from_query(root, query, regions, truncated):
    """(defs, uses) as lists of (start_byte, end_byte, node) from the role query: one run over
    the whole tree or, for a truncated graph, one per region (the tree may be huge, its kept
    top part is not). A compound assignment / ++ target is in both lists."""
    import tree_sitter

    if not truncated:
        captures = tree_sitter.QueryCursor(query).captures(root)
    else:
        captures = {}
        for start, end, _, node in regions:
            cursor = tree_sitter.QueryCursor(query)
            if start != node.start_byte or end != node.end_byte:
                cursor.set_byte_range(start, end)
            for name, found in cursor.captures(node).items():
                captures.setdefault(name, []).extend(found)
    # Identifiers are non-empty leaves: within a tree their start byte identifies them.
    not_use = {x.start_byte for x in captures.get("skip", ())}
    defs = []
    for x in captures.get("def", ()):
        sb = x.start_byte
        not_use.add(sb)
        defs.append((sb, x.end_byte, x))
    for x in captures.get("rw", ()):
        defs.append((x.start_byte, x.end_byte, x))
    uses = []
    for x in captures.get("id", ()):
        sb = x.start_byte
        if sb not in not_use:
            uses.append((sb, x.end_byte, x))
    return defs, uses


def _roles_from_arrays(ast: AstArrays, tables: _Tables):
    """(defs, uses) as lists of (start_byte, end_byte, graph index), the same rules as the query
    applied to the parent kind and the neighbouring siblings (contiguous in BFS order)."""
    kind, span, edge_src = ast.kind, ast.span, ast.edge_src
    roles = tables.parent_roles.get
    value_tokens, plain_assign = tables.value_tokens, tables.plain_assign
    n = len(kind)
    defs, uses = [], []
    for i in ast.identifiers:
        if i == 0:
            continue
        p = edge_src[i - 1]
        role = roles(kind[p])
        if role is None:
            uses.append((*span[i], i))
            continue
        if role == _R_SKIP:
            continue
        first = i == 1 or edge_src[i - 2] != p  # no previous sibling
        if role == _R_ASSIGN:
            if not first:
                uses.append((*span[i], i))  # the right-hand side
                continue
            nxt = i + 1
            if nxt < n and edge_src[i] == p and kind[nxt] in plain_assign:
                defs.append((*span[i], i))
                continue
            role = _R_RW  # compound operator (or a missing one)
        if role == _R_RW:
            sp = span[i]
            defs.append((*sp, i))
            uses.append((*sp, i))
        elif role == _R_DEF:
            defs.append((*span[i], i))
        elif role == _R_DEF_FIRST:
            (defs if first else uses).append((*span[i], i))
        else:  # _R_DEF_UNLESS_VALUE: the identifier after `=` / `:` is a value
            if not first and kind[i - 1] in value_tokens:
                uses.append((*span[i], i))
            else:
                defs.append((*span[i], i))
    return defs, uses


def _reaching_definitions(n, edges, regions, defs, uses, src, base):
    """Reaching definitions over the CFG (n nodes). defs / uses: (start_byte, end_byte, handle)
    of identifiers; an identifier belongs to the CFG node whose region holds it (others are
    ignored). Returns (def handle, use handle) pairs."""
    regions.sort(key=_region_key)  # (never compares the nodes in the tuples)
    starts = [r[0] for r in regions]
    ends = [r[1] for r in regions]
    owners = [r[2] for r in regions]

    # Definitions: bit b <-> def_handles[b]; per CFG node its gen mask and the names it defines.
    def_handles: list = []
    name_mask: dict[bytes, int] = {}
    gen = [0] * n
    defined: dict[int, list[bytes]] = {}
    for sb, eb, h in defs:
        r = bisect_right(starts, sb) - 1
        if r < 0 or sb >= ends[r]:
            continue
        v = owners[r]
        name = src[sb - base:eb - base]
        bit = 1 << len(def_handles)
        def_handles.append(h)
        name_mask[name] = name_mask.get(name, 0) | bit
        gen[v] |= bit
        names = defined.get(v)
        if names is None:
            defined[v] = [name]
        else:
            names.append(name)
    if not def_handles:
        return []

    # Uses of names that have definitions: (CFG node, mask of that name's defs, handle).
    live: list[tuple] = []
    for sb, eb, h in uses:
        m = name_mask.get(src[sb - base:eb - base])
        if m:
            r = bisect_right(starts, sb) - 1
            if r >= 0 and sb < ends[r]:
                live.append((owners[r], m, h))
    if not live:
        return []

    keep = [-1] * n  # complement of the kill set; -1 keeps everything
    for v, names in defined.items():
        kill = 0
        for name in names:
            kill |= name_mask[name]
        keep[v] = ~kill
    # One pass over the edges by source: creation order is about source order, so every
    # forward edge (older -> newer node) into a node comes before the edges out of it, and this
    # pass alone is the fixpoint when there is no back edge (no loop, no backward goto).
    out = gen[:]
    inn = [0] * n
    seeds = []  # sources of back edges
    last, o = -1, 0
    for a, b in sorted(edges):
        if a != last:
            last = a
            o = out[a] = gen[a] | (inn[a] & keep[a])
        if a < b:
            inn[b] |= o
        elif not seeds or seeds[-1] != a:
            seeds.append(a)
    if seeds:
        # Then a push-style worklist from the back edges: the sets only grow, so when OUT[p]
        # grows it is OR-ed into its successors' IN, and a successor is queued only if its OUT
        # grows in turn: the cost is per edge and per change, never per visit and in-degree
        # (after 10,000 nested do-whiles one node has 10,000 predecessors). The queue is a heap
        # on creation order, so each round goes through a loop body front to back.
        succs: list[list[int]] = [[] for _ in range(n)]
        for a, b in edges:
            succs[a].append(b)
        heap = seeds  # sorted: already a heap
        queued = [False] * n
        for v in heap:
            queued[v] = True
        # Deterministic work cap: real functions converge in a few relaxations per edge, but
        # the answer itself can be quadratic (10,000 nested loops redefining one variable).
        # Past the cap the sets so far are kept: a subset of the true reaching definitions.
        budget = (_RD_WORK_PER_EDGE * (n + len(edges)) + _RD_WORK_MIN) // (len(def_handles) // 64 + 1)
        while heap and budget > 0:
            p = heappop(heap)
            queued[p] = False
            o = out[p]
            nexts = succs[p]
            budget -= len(nexts) + 1
            for s in nexts:
                i = inn[s]
                if o | i != i:
                    i |= o
                    inn[s] = i
                    so = gen[s] | (i & keep[s])
                    if so != out[s]:
                        out[s] = so
                        if not queued[s]:
                            queued[s] = True
                            heappush(heap, s)

    pairs = []
    room = _MAX_PAIRS_PER_IDENTIFIER * (len(defs) + len(uses)) + _MAX_PAIRS_MIN
    for v, m, h in live:
        reach = inn[v] & m
        while reach:
            low = reach & -reach
            pairs.append((def_handles[low.bit_length() - 1], h))
            reach ^= low
        if len(pairs) > room:  # a pathological, quadratic answer: keep a bounded part
            return pairs[:room]
    return pairs


def flow_edges(root, index_of: dict[int, int], lang: str = "c", *,
               ast: AstArrays | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(cfg_edges, dfg_edges) as (src_graph_idx, dst_graph_idx) pairs.

    root: the tree-sitter root node (translation_unit) of ONE function's source (it may hold a
    function_definition, or just statements / broken code when the parse failed).
    index_of: maps tree-sitter `node.id` -> graph node index for every node kept in the graph;
    any edge touching a node not in index_of is dropped (graph truncation). A kept node's
    ancestors are assumed kept (true of a breadth-first prefix).
    ast: optional, for speed: the arrays of the breadth-first walk that built index_of (see
    `AstArrays`); identifiers and their roles are then read from them instead of running a
    tree-sitter query over the tree, and index_of need only hold the nodes `index_kinds` names.
    Same edges, except that in a truncated graph definitions outside the kept nodes are not
    seen at all (with the query, a definition below the cut-off inside a kept statement still
    kills older definitions).
    See the module docstring for what the edges mean. Both lists are sorted and duplicate-free."""
    tables = _tables(lang)
    truncated = root.descendant_count > (len(index_of) if ast is None else len(ast.kind))
    ts_ids, edges, regions = _build_cfg(root, tables, index_of, truncated)
    get = index_of.get
    cfg = []
    for a, b in edges:
        ia = get(ts_ids[a])
        if ia is not None:
            ib = get(ts_ids[b])
            if ib is not None:
                cfg.append((ia, ib))
    cfg.sort()
    if not regions:
        return cfg, []

    if ast is not None:
        defs, uses = _roles_from_arrays(ast, tables)
        pairs = _reaching_definitions(len(ts_ids), edges, regions, defs, uses, ast.source, 0)
        return cfg, sorted({(a, b) for a, b in pairs if a != b})

    defs, uses = _roles_from_query(root, tables.query, regions, truncated)
    pairs = _reaching_definitions(len(ts_ids), edges, regions, defs, uses, root.text,
                                  root.start_byte)
    dfg = set()
    index: dict = {}  # node handle -> graph index (-1: not kept), each looked up once
    for d, u in pairs:
        ia = index.get(d)
        if ia is None:
            ia = index[d] = get(d.id, -1)
        ib = index.get(u)
        if ib is None:
            ib = index[u] = get(u.id, -1)
        if ia >= 0 and ib >= 0 and ia != ib:
            dfg.add((ia, ib))
    return cfg, sorted(dfg)
