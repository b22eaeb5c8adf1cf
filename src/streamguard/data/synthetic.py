"""Deterministic generator of labelled synthetic C functions.

This is the project's embedded default dataset: the quickstart trains on it and the
tests use it, so it must be small to ship (it is code, not data), deterministic, and
hard enough that a model has to learn *structure* rather than the presence of one token.

Design
------
* Each vulnerable ("flawed", ``target=1``) function has a fixed twin (``target=0``)
  built from the *same* sampled choices: identifiers, types, sizes, formatting style,
  benign filler statements and wrapping.  Only the fix differs, so the pair's difference
  cannot be explained by formatting.  Both twins share a ``group`` id, which splitting
  must use so twins never straddle train/test.
* Every fix changes the AST shape or a call (a guard ``if``, a bounded call argument, a
  ``"%s"`` literal, a ``+ 1``...), never only a reordering of identical statements: a
  GNN that pools over an AST without sibling order could not tell pure reorderings apart.
  (The ``i <= n`` vs ``i < n`` off-by-one fix differs only in an operator token, which a
  graph builder that keeps only named nodes would not see, so a third of those fixes use a
  structural form such as ``i <= n - 1`` instead.)
* Risky API names occur on both sides: fixed twins still call ``strcpy`` behind a length
  check, ``system`` after validation, ``free`` with the pointer nulled; benign fillers in
  flawed functions use ``strncpy``/``snprintf``/``calloc``/``free`` safely; benign
  distractors (``cwe=""``) are ordinary utilities that use the same APIs safely.
* Only ``random.Random(seed)`` is used and no set/dict iteration order of strings is
  relied upon, so the output is identical across processes and ``PYTHONHASHSEED``.

The generated code is meant to *parse* (tree-sitter-c, no ERROR/MISSING nodes), not to
compile: headers are not included and helper functions are undeclared.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Union

__all__ = ["GENERATOR_VERSION", "CWE_FAMILIES", "generate_samples"]

GENERATOR_VERSION = "1"

CWE_FAMILIES: tuple[str, ...] = (
    "CWE-121",  # stack buffer overflow
    "CWE-122",  # heap buffer overflow
    "CWE-134",  # format string
    "CWE-190",  # integer overflow before allocation
    "CWE-416",  # use after free
    "CWE-415",  # double free
    "CWE-476",  # NULL pointer dereference
    "CWE-193",  # off-by-one
    "CWE-78",  # OS command injection
    "CWE-252",  # unchecked return value
    "CWE-369",  # divide by zero
    "CWE-22",  # path traversal
)

# Share of samples that are benign distractors.  Every flawed sample has exactly one
# fixed twin, so the vulnerable share is (1 - share) / 2 = ~0.42.
_DISTRACTOR_SHARE = 0.17

# --------------------------------------------------------------------------------------
# Tiny statement tree + renderer.  Statements are strings (one line each, "" = blank
# line) or tuples for compound statements, so formatting is applied at render time.
# --------------------------------------------------------------------------------------

Stmt = Union[str, tuple]


def IF(cond: str, body: list, orelse: list | None = None) -> tuple:
    return ("if", cond, list(body), list(orelse) if orelse else None)


def FOR(head: str, body: list) -> tuple:
    return ("for", head, list(body))


def WHILE(cond: str, body: list) -> tuple:
    return ("while", cond, list(body))


def DO(body: list, cond: str) -> tuple:
    return ("do", list(body), cond)


def SWITCH(expr: str, cases: list) -> tuple:
    return ("switch", expr, cases)


@dataclass
class _Style:
    indent: str
    brace: str  # "kr" | "allman" | "stroustrup"
    func_nl: bool  # function opening brace on its own line
    ret_nl: bool  # return type on its own line
    static: bool
    omit: bool  # omit braces around single simple statements
    same_line: bool  # ... and put that statement on the header line
    kw_space: bool  # "if (" vs "if("
    compact: bool  # "a=b+1" vs "a = b + 1"
    star_left: bool  # "char* p" vs "char *p"
    sizeof_paren: bool
    null_style: str  # "eq" | "not" | "yoda"
    verbose_fail: bool  # log before an error return
    comments: bool
    case_indent: bool
    blank: bool
    camel: bool

    @staticmethod
    def sample(r: random.Random) -> "_Style":
        brace = r.choice(("kr", "kr", "allman", "stroustrup"))
        return _Style(
            indent=r.choice(("  ", "    ", "    ", "\t", "   ")),
            brace=brace,
            func_nl=brace == "allman" or r.random() < 0.5,
            ret_nl=r.random() < 0.15,
            static=r.random() < 0.3,
            omit=r.random() < 0.45,
            same_line=r.random() < 0.35,
            kw_space=r.random() < 0.8,
            compact=r.random() < 0.2,
            star_left=r.random() < 0.2,
            sizeof_paren=r.random() < 0.75,
            null_style=r.choice(("eq", "eq", "not", "yoda")),
            verbose_fail=r.random() < 0.3,
            comments=r.random() < 0.4,
            case_indent=r.random() < 0.5,
            blank=r.random() < 0.5,
            camel=r.random() < 0.25,
        )


def _simple(s: Stmt) -> bool:
    return isinstance(s, str) and bool(s) and not s.startswith("/")


def _open(st: _Style, head: str, ind: str, out: list[str]) -> None:
    if st.brace == "allman":
        out.append(ind + head)
        out.append(ind + "{")
    else:
        out.append(ind + head + " {")


def _render_block(st: _Style, head: str, body: list, depth: int, out: list[str]) -> None:
    ind = st.indent * depth
    if st.omit and len(body) == 1 and _simple(body[0]):
        if st.same_line:
            out.append(f"{ind}{head} {body[0]}")
        else:
            out.append(ind + head)
            out.append(ind + st.indent + body[0])
        return
    _open(st, head, ind, out)
    _render_body(st, body, depth + 1, out)
    out.append(ind + "}")


def _render_body(st: _Style, stmts: list, depth: int, out: list[str]) -> None:
    for s in stmts:
        _render_stmt(st, s, depth, out)


def _render_stmt(st: _Style, s: Stmt, depth: int, out: list[str]) -> None:
    ind = st.indent * depth
    if isinstance(s, str):
        out.append(ind + s if s else "")
        return
    kind = s[0]
    if kind == "if":
        _, cond, body, orelse = s
        head = f"if ({cond})"
        if not orelse:
            _render_block(st, head, body, depth, out)
            return
        _open(st, head, ind, out)
        _render_body(st, body, depth + 1, out)
        if st.brace == "kr":
            out.append(ind + "} else {")
        elif st.brace == "stroustrup":
            out.append(ind + "}")
            out.append(ind + "else {")
        else:
            out.append(ind + "}")
            out.append(ind + "else")
            out.append(ind + "{")
        _render_body(st, orelse, depth + 1, out)
        out.append(ind + "}")
    elif kind == "for":
        _render_block(st, f"for ({s[1]})", s[2], depth, out)
    elif kind == "while":
        _render_block(st, f"while ({s[1]})", s[2], depth, out)
    elif kind == "do":
        _open(st, "do", ind, out)
        _render_body(st, s[1], depth + 1, out)
        if st.brace == "kr":
            out.append(f"{ind}}} while ({s[2]});")
        else:
            out.append(ind + "}")
            out.append(f"{ind}while ({s[2]});")
    elif kind == "switch":
        _open(st, f"switch ({s[1]})", ind, out)
        cdepth = depth + 1 if st.case_indent else depth
        for label, body in s[2]:
            out.append(st.indent * cdepth + label + ":")
            _render_body(st, body, cdepth + 1, out)
        out.append(ind + "}")
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown statement kind {kind!r}")


# String/char literals are kept verbatim when compacting operators.
_LITERAL_RE = re.compile(r"(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')")
_OPS_RE = re.compile(r" (==|!=|<=|>=|\+=|-=|\*=|/=|\|=|&=|\^=|&&|\|\||<<|>>|=|<|>|\+|-|\*|/|%) ")
_KW_RE = re.compile(r"\b(if|for|while|switch) \(")


def _postprocess(st: _Style, line: str) -> str:
    if not st.compact and st.kw_space:
        return line
    parts = _LITERAL_RE.split(line)
    for i in range(0, len(parts), 2):  # even indices are code, odd ones literals
        p = parts[i]
        if st.compact:
            p = _OPS_RE.sub(r"\1", p)
        if not st.kw_space:
            p = _KW_RE.sub(r"\1(", p)
        parts[i] = p
    return "".join(parts)


# --------------------------------------------------------------------------------------
# Naming pools
# --------------------------------------------------------------------------------------

_POOLS: dict[str, tuple[str, ...]] = {
    "buf": ("buf", "dst", "out", "tmp", "line", "name", "path", "label", "field", "local", "work", "scratch_buf", "text"),
    "src": ("src", "input", "user", "arg", "str", "value", "name_in", "text_in", "s", "req", "param", "token"),
    "dir": ("dir", "base", "prefix", "root", "host", "first", "section"),
    "name": ("file", "leaf", "suffix", "key", "entry", "second", "item_name"),
    "data": ("data", "payload", "bytes", "raw", "chunk", "pkt", "blob"),
    "len": ("len", "n", "size", "nbytes", "count", "length", "sz", "total_len"),
    "ptr": ("p", "ptr", "mem", "block", "res", "copy", "dup", "obj", "area", "result"),
    "idx": ("i", "j", "idx", "pos", "off", "cursor"),
    "k": ("k", "m", "t", "ii", "step", "w"),
    "acc": ("acc", "sum", "total", "hash", "crc", "mix", "tally"),
    "flags": ("flags", "mode", "opts", "mask", "bits"),
    "tries": ("tries", "retries", "attempts", "spins", "rounds"),
    "tag": ("tag", "label_buf", "prefix_buf", "unit", "kind_buf"),
    "state": ("state", "phase", "st", "stage"),
    "scratch": ("scratch", "aux", "spare", "tmpmem", "pad"),
    "verbose": ("verbose", "debug", "trace_on", "dbg"),
    "msg": ("msg", "fmt", "text", "message", "user_msg", "line", "note", "s"),
    "obj": ("conn", "sess", "node", "obj", "req", "item", "handle", "ctx", "client"),
    "count": ("count", "n", "nmemb", "num", "nitems", "elems"),
    "esize": ("size", "elem_size", "width", "stride", "sz"),
    "rc": ("rc", "ret", "err", "status", "res", "r"),
    "fp": ("fp", "f", "in", "stream", "file"),
    "fd": ("fd", "sock", "desc", "infd"),
    "arr": ("arr", "vals", "table", "slots", "cells", "counts", "vec"),
    "cmd": ("cmd", "command", "cmdline", "shell_cmd", "buf"),
    "mode": ("enabled", "mode", "active", "ready", "allow"),
    "once": ("once", "again", "pending"),
    "env": ("home", "dir", "env", "val", "cfg"),
    "sep": ("sep", "eq", "colon", "delim", "mark"),
}
_SUFFIXES = ("2", "_a", "_b", "0", "_v", "_x", "1", "_tmp", "_in", "_p")

_VERBS = ("copy", "store", "load", "parse", "build", "make", "read", "write", "handle", "process",
          "init", "update", "format", "emit", "fill", "setup", "apply", "render", "prepare", "run",
          "collect", "save", "fetch", "decode", "encode", "scan", "check", "send", "get", "set")
_NOUNS = ("name", "path", "record", "header", "entry", "buffer", "message", "config", "packet",
          "token", "field", "item", "user", "session", "request", "reply", "label", "value",
          "table", "list", "node", "frame", "block", "line", "command", "file", "key", "data")
_HELPERS = ("process", "handle_name", "consume", "emit_record", "store_value", "parse_entry",
            "submit", "use_buffer", "dispatch", "commit_data", "apply_line", "push_item")
_LOG_FAIL = ("log_error", "log_warn", "report_error", "warnx", "dbg_print")
_LOG_DBG = ("log_debug", "trace", "debug_log", "log_info", "vlog")
_COMMENTS = ("/* prepare state */", "// main work", "/* keep in sync with the header */",
             "/* helper for the parser */", "// see protocol notes", "/* fast path */",
             "/* called from the event loop */", "// defaults", "/* XXX: revisit */",
             "/* local bookkeeping */", "// step 2")
_SIZES = ("16", "32", "64", "64", "100", "128", "128", "256", "256", "512", "1024",
          "BUF_SIZE", "NAME_LEN", "PATH_LEN", "MAX_LINE")


class _Ctx:
    """Choices shared by both twins of a pair (or by one distractor)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.st = _Style.sample(rng)
        self._used: list[str] = []  # list (not set): membership only, order irrelevant
        self.ifail = rng.choice(("-1", "-1", "-1", "-EINVAL", "ERR_FAIL"))
        self.logf = rng.choice(_LOG_FAIL)
        self.logd = rng.choice(_LOG_DBG)

    # random helpers -------------------------------------------------------------
    def pick(self, seq):
        return self.rng.choice(seq)

    def coin(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def v(self, role: str) -> str:
        """A fresh, function-unique identifier from the role's pool."""
        name = self.pick(_POOLS[role])
        if self.coin(0.3):
            name += self.pick(_SUFFIXES)
        base, k = name, 2
        while name in self._used:
            name = f"{base}{k}"
            k += 1
        self._used.append(name)
        return name

    def fname(self, verbs=_VERBS, nouns=_NOUNS) -> str:
        verb, noun = self.pick(verbs), self.pick(nouns)
        name = verb + noun.capitalize() if self.st.camel else f"{verb}_{noun}"
        r = self.rng.random()
        if r < 0.55:
            name += f"_{self.rng.randrange(0x1000):x}"
        elif r < 0.85:
            name += str(self.rng.randrange(100))
        self._used.append(name)
        return name

    def helper(self) -> str:
        h = self.pick(_HELPERS)
        return h + str(self.rng.randrange(10)) if self.coin(0.3) else h

    def size(self) -> str:
        return self.pick(_SIZES)

    # C snippets -----------------------------------------------------------------
    def tn(self, typ: str, name: str) -> str:
        """Type + declarator with the pair's pointer-star placement."""
        t = typ.rstrip()
        if t.endswith("*"):
            base = t.rstrip("*").rstrip()
            stars = "*" * (len(t) - len(t.rstrip("*")))
            return f"{base}{stars} {name}" if self.st.star_left else f"{base} {stars}{name}"
        return f"{t} {name}"

    def sz(self, x: str) -> str:
        return f"sizeof({x})" if self.st.sizeof_paren else f"sizeof {x}"

    def isnull(self, x: str) -> str:
        return {"eq": f"{x} == NULL", "not": f"!{x}", "yoda": f"NULL == {x}"}[self.st.null_style]

    def notnull(self, x: str) -> str:
        return {"eq": f"{x} != NULL", "not": x, "yoda": f"NULL != {x}"}[self.st.null_style]

    def ret(self, val: str | None) -> str:
        return "return;" if val is None else f"return {val};"

    def fail(self, val: str | None, pre: tuple | list = ()) -> list:
        body = list(pre)
        if self.st.verbose_fail:
            body.append(f'{self.logf}("%s: failed", __func__);')
        body.append(self.ret(val))
        return body

    def guard(self, cond: str, val: str | None, pre: tuple | list = ()) -> tuple:
        return IF(cond, self.fail(val, pre))

    def comment(self) -> str:
        return self.pick(_COMMENTS)


@dataclass
class _Spec:
    ret: str
    params: list  # [(type, name)]
    fail: str | None  # value returned on error; None for void functions
    setup: list  # shared statements before the core
    flawed: list
    fixed: list
    tail: list  # shared statements after the core
    ptrs: list = field(default_factory=list)  # pointer params fillers may null-check
    verbs: tuple = _VERBS
    nouns: tuple = _NOUNS


# --------------------------------------------------------------------------------------
# Vulnerability families.  Each returns a _Spec whose flawed/fixed cores differ only in
# the fix; everything else is shared.
# --------------------------------------------------------------------------------------


def _use_buf_tail(c: _Ctx, buf: str) -> list:
    h = c.helper()
    return c.pick((
        [f"return {h}({buf});"],
        [f"{h}({buf});", "return 0;"],
        [f"return (int)strlen({buf});"],
    ))


def _fam_121(c: _Ctx) -> _Spec:
    buf, src, size = c.v("buf"), c.v("src"), c.size()
    bound = c.sz(buf) if c.coin(0.7) else size
    variant = c.pick(("strcpy", "strcpy", "sprintf", "memcpy", "strcat", "loop"))
    params: list = [("const char *", src)]
    setup = [f"char {buf}[{size}];"]
    tail = _use_buf_tail(c, buf)
    fail = c.ifail
    if variant == "strcpy":
        flawed = [f"strcpy({buf}, {src});"]
        fixed = c.pick((
            [c.guard(f"strlen({src}) >= {bound}", fail), f"strcpy({buf}, {src});"],
            [f"strncpy({buf}, {src}, {bound} - 1);", f"{buf}[{bound} - 1] = '\\0';"],
            [f'snprintf({buf}, {bound}, "%s", {src});'],
        ))
    elif variant == "sprintf":
        a = c.v("dir")
        if c.coin(0.6):
            fmt = c.pick(('"%s/%s"', '"%s.%s"', '"%s:%s"', '"%s=%s"'))
            params = [("const char *", a), ("const char *", src)]
            need = f"strlen({a}) + strlen({src}) + 2 > {bound}"
        else:
            fmt = c.pick(('"%s-%d"', '"%s#%d"', '"%s/%d.log"'))
            params = [("const char *", a), ("int", src)]
            need = f"strlen({a}) + 16 > {bound}"
        flawed = [f"sprintf({buf}, {fmt}, {a}, {src});"]
        fixed = c.pick((
            [f"snprintf({buf}, {bound}, {fmt}, {a}, {src});"],
            [c.guard(need, fail), f"sprintf({buf}, {fmt}, {a}, {src});"],
        ))
    elif variant == "memcpy":
        data, ln = c.v("data"), c.v("len")
        btype = c.pick(("char", "unsigned char", "uint8_t"))
        ltype = c.pick(("size_t", "size_t", "int", "unsigned int", "long"))
        params = [(c.pick(("const void *", "const unsigned char *", "const char *")), data), (ltype, ln)]
        setup = [f"{btype} {buf}[{size}];"]
        tail = [f"return {c.helper()}({buf});"]
        signed = ltype in ("int", "long")
        flawed = [f"memcpy({buf}, {data}, {ln});"]
        if c.coin():
            neg = f"{ln} < 0 || " if signed else ""
            fixed = [c.guard(f"{neg}{ln} > {bound}", fail), f"memcpy({buf}, {data}, {ln});"]
        else:
            fixed = [f"memcpy({buf}, {data}, {ln} < {bound} ? {ln} : {bound});"]
            if signed:  # a shared sign check keeps the min() form correct
                setup.append(c.guard(f"{ln} < 0", fail))
    elif variant == "strcat":
        lit = c.pick(('"/tmp/"', '"user:"', '"id="', '"/var/run/"', '"key "'))
        pre = f"strcpy({buf}, {lit});"
        flawed = [pre, f"strcat({buf}, {src});"]
        fixed = c.pick((
            [pre, c.guard(f"strlen({buf}) + strlen({src}) >= {bound}", fail), f"strcat({buf}, {src});"],
            [pre, f"strncat({buf}, {src}, {bound} - strlen({buf}) - 1);"],
        ))
    else:  # manual copy loop
        i = c.v("idx")
        setup = [f"char {buf}[{size}];", f"size_t {i} = 0;"]
        body = [f"{buf}[{i}] = {src}[{i}];", f"{i}++;"]
        flawed = [WHILE(f"{src}[{i}] != '\\0'", body), f"{buf}[{i}] = '\\0';"]
        fixed = [WHILE(f"{i} < {bound} - 1 && {src}[{i}] != '\\0'", body), f"{buf}[{i}] = '\\0';"]
    ptrs = [n for t, n in params if "*" in t]
    return _Spec("int", params, fail, setup, flawed, fixed, tail, ptrs,
                 nouns=("name", "path", "label", "field", "user", "key", "line", "entry"))


def _fam_122(c: _Ctx) -> _Spec:
    p, src = c.v("ptr"), c.v("src")
    variant = c.pick(("strlen", "strlen", "cap", "sprintf", "index"))
    if variant == "strlen":
        setup = [f"{c.tn('char *', p)};"]
        after = [c.guard(c.isnull(p), "NULL"), f"strcpy({p}, {src});"]
        if c.coin():
            flawed = [f"{p} = malloc(strlen({src}));"] + after
            fixed = [f"{p} = malloc(strlen({src}) + 1);"] + after
        else:
            n = c.v("len")
            setup.append(f"size_t {n} = strlen({src});")
            after = [c.guard(c.isnull(p), "NULL"), f"memcpy({p}, {src}, {n} + 1);"]
            flawed = [f"{p} = malloc({n});"] + after
            fixed = [f"{p} = malloc({n} + 1);"] + after
        return _Spec("char *", [("const char *", src)], "NULL", setup, flawed, fixed,
                     [f"return {p};"], [src], verbs=("dup", "clone", "copy", "save", "intern"))
    if variant == "cap":
        ln, cap = c.v("len"), c.pick(("64", "128", "256", "BLOCK_SIZE", "REC_MAX"))
        ltype = c.pick(("size_t", "size_t", "unsigned int"))
        setup = [f"{c.tn('unsigned char *', p)} = malloc({cap});", c.guard(c.isnull(p), c.ifail)]
        flawed = [f"memcpy({p}, {src}, {ln});"]
        fixed = c.pick((
            [c.guard(f"{ln} > {cap}", c.ifail, pre=[f"free({p});"]), f"memcpy({p}, {src}, {ln});"],
            [f"memcpy({p}, {src}, {ln} < {cap} ? {ln} : {cap});"],
        ))
        tail = [f"{c.helper()}({p});", f"free({p});", "return 0;"]
        return _Spec("int", [("const void *", src), (ltype, ln)], c.ifail, setup, flawed, fixed, tail, [src])
    if variant == "sprintf":
        port, cap = c.v("len"), c.pick(("32", "64", "128", "ADDR_LEN"))
        setup = [f"{c.tn('char *', p)} = malloc({cap});", c.guard(c.isnull(p), "NULL")]
        fmt = c.pick(('"%s:%d"', '"%s/%d"', '"[%s]:%d"'))
        flawed = [f"sprintf({p}, {fmt}, {src}, {port});"]
        fixed = [f"snprintf({p}, {cap}, {fmt}, {src}, {port});"]
        return _Spec("char *", [("const char *", src), ("int", port)], "NULL", setup, flawed, fixed,
                     [f"return {p};"], [src], nouns=("addr", "endpoint", "url", "label", "key"))
    # index: heap array written at an unchecked index
    cnt, idx, val = c.v("count"), c.v("idx"), c.v("acc")
    et = c.pick(("int", "long", "unsigned int", "short"))
    setup = [f"{c.tn(et + ' *', p)} = calloc({cnt}, sizeof({et}));", c.guard(c.isnull(p), c.ifail)]
    flawed = [f"{p}[{idx}] = {val};"]
    fixed = [c.guard(f"{idx} < 0 || (size_t){idx} >= {cnt}", c.ifail, pre=[f"free({p});"]), f"{p}[{idx}] = {val};"]
    tail = [f"{c.helper()}({p}, {cnt});", f"free({p});", "return 0;"]
    return _Spec("int", [("size_t", cnt), ("int", idx), (et, val)], c.ifail, setup, flawed, fixed, tail)


def _fam_134(c: _Ctx) -> _Spec:
    msg = c.v("msg")
    ret = c.pick(("void", "int", "int"))
    fail = None if ret == "void" else c.ifail
    tail = [] if ret == "void" else ["return 0;"]
    params: list = [("const char *", msg)]
    setup: list = []
    variant = c.pick(("printf", "fprintf", "syslog", "snprintf", "built"))
    if variant == "printf":
        flawed = [f"printf({msg});"]
        fixed = [c.pick((f'printf("%s", {msg});', f'printf("%s\\n", {msg});', f"fputs({msg}, stdout);"))]
    elif variant == "fprintf":
        if c.coin(0.4):
            stream = c.v("fp")
            params.insert(0, ("FILE *", stream))
        else:
            stream = c.pick(("stderr", "stdout"))
        flawed = [f"fprintf({stream}, {msg});"]
        fixed = [c.pick((f'fprintf({stream}, "%s", {msg});', f"fputs({msg}, {stream});"))]
    elif variant == "syslog":
        lvl = c.pick(("LOG_ERR", "LOG_WARNING", "LOG_NOTICE", "LOG_INFO", "LOG_DEBUG"))
        flawed = [f"syslog({lvl}, {msg});"]
        fixed = [f'syslog({lvl}, "%s", {msg});']
    elif variant == "snprintf":
        out = c.v("buf")
        setup = [f"char {out}[{c.size()}];"]
        flawed = [f"snprintf({out}, {c.sz(out)}, {msg});"]
        fixed = [f'snprintf({out}, {c.sz(out)}, "%s", {msg});']
        tail = [f"{c.helper()}({out});"] + tail
    else:  # message is built from user data first, then used as a format
        line, tag = c.v("buf"), c.v("dir")
        params = [("const char *", tag), ("const char *", msg)]
        setup = [f"char {line}[{c.size()}];",
                 f'snprintf({line}, {c.sz(line)}, "%s: %s\\n", {tag}, {msg});']
        sink = c.pick(("printf", "stderr", "syslog"))
        if sink == "printf":
            flawed, fixed = [f"printf({line});"], [f'printf("%s", {line});']
        elif sink == "stderr":
            flawed = [f"fprintf(stderr, {line});"]
            fixed = [c.pick((f'fprintf(stderr, "%s", {line});', f"fputs({line}, stderr);"))]
        else:
            flawed, fixed = [f"syslog(LOG_ERR, {line});"], [f'syslog(LOG_ERR, "%s", {line});']
    if c.coin(0.3):  # a safe, literal-format print shared by both twins
        lvl = c.v("flags")
        params.append(("int", lvl))
        setup.append(f'fprintf(stderr, "[%d] ", {lvl});')
    ptrs = [n for t, n in params if "*" in t]
    return _Spec(ret, params, fail, setup, flawed, fixed, tail, ptrs,
                 verbs=("log", "report", "print", "emit", "show", "warn", "notify", "trace"))


def _fam_190(c: _Ctx) -> _Spec:
    p = c.v("ptr")
    variant = c.pick(("mul", "struct", "image", "add"))
    if variant == "mul":
        cnt, esz = c.v("count"), c.v("esize")
        setup = [f"{c.tn('void *', p)} = NULL;"]
        alloc = f"{p} = malloc({cnt} * {esz});"
        after = [c.guard(c.isnull(p), "NULL"), f"memset({p}, 0, {cnt} * {esz});"]
        flawed = [alloc] + after
        fixed = c.pick((
            [c.guard(f"{esz} != 0 && {cnt} > SIZE_MAX / {esz}", "NULL"), alloc] + after,
            [f"{p} = calloc({cnt}, {esz});", c.guard(c.isnull(p), "NULL")],
        ))
        return _Spec("void *", [("size_t", cnt), ("size_t", esz)], "NULL", setup, flawed, fixed,
                     [f"return {p};"], verbs=("alloc", "new", "make", "create", "reserve"))
    if variant == "struct":
        n, i = c.v("count"), c.v("idx")
        nt = c.pick(("size_t", "int", "unsigned int"))
        stype = c.pick(("struct entry", "struct item", "struct record", "struct point", "struct slot"))
        fld = c.pick(("id", "flags", "len", "x", "state"))
        setup = [f"{c.tn(stype + ' *', p)} = NULL;", f"{nt} {i};"]
        elem = c.pick((f"sizeof({stype})", f"sizeof(*{p})"))
        alloc = f"{p} = malloc({n} * {elem});"
        after = [c.guard(c.isnull(p), "NULL"), FOR(f"{i} = 0; {i} < {n}; {i}++", [f"{p}[{i}].{fld} = 0;"])]
        chk = f"{n} < 0 || (size_t){n} > SIZE_MAX / {elem}" if nt == "int" else f"{n} > SIZE_MAX / {elem}"
        flawed = [alloc] + after
        fixed = c.pick((
            [c.guard(chk, "NULL"), alloc] + after,
            [f"{p} = calloc({n}, {elem});"] + after,
        ))
        return _Spec(stype + " *", [(nt, n)], "NULL", setup, flawed, fixed, [f"return {p};"],
                     verbs=("alloc", "new", "make", "create"), nouns=("table", "items", "entries", "points", "slots"))
    if variant == "image":
        w, h, total = c.v("esize"), c.v("count"), c.v("len")
        bpp = c.pick(("3", "4", "BPP"))
        setup = [f"{c.tn('unsigned char *', p)};", f"size_t {total};"]
        alloc = f"{p} = malloc({total});"
        flawed = [f"{total} = {w} * {h} * {bpp};", alloc]
        if c.coin():
            fixed = [c.guard(f"{w} <= 0 || {h} <= 0 || {w} > INT_MAX / {bpp} / {h}", "NULL")] + flawed
        else:  # checked in size_t, so the product must be computed in size_t too
            fixed = [c.guard(f"{w} <= 0 || {h} <= 0", "NULL"),
                     c.guard(f"(size_t){w} > SIZE_MAX / {bpp} / (size_t){h}", "NULL"),
                     f"{total} = (size_t){w} * (size_t){h} * {bpp};", alloc]
        tail = [c.guard(c.isnull(p), "NULL"), f"memset({p}, 0, {total});", f"return {p};"]
        return _Spec("unsigned char *", [("int", w), ("int", h)], "NULL", setup, flawed, fixed, tail,
                     verbs=("alloc", "new", "create"), nouns=("image", "frame", "canvas", "bitmap", "surface"))
    ln, data = c.v("len"), c.v("data")
    hdr = c.pick(("HDR_LEN", "16", "sizeof(struct hdr)", "8"))
    setup = [f"{c.tn('char *', p)};"]
    alloc = f"{p} = malloc({ln} + {hdr});"
    flawed = [alloc]
    fixed = [c.guard(f"{ln} > SIZE_MAX - {hdr}", "NULL"), alloc]
    tail = [c.guard(c.isnull(p), "NULL"), f"memcpy({p} + {hdr}, {data}, {ln});", f"return {p};"]
    return _Spec("char *", [("const void *", data), ("size_t", ln)], "NULL", setup, flawed, fixed, tail, [data],
                 nouns=("packet", "frame", "message", "record"))


def _fam_416(c: _Ctx) -> _Spec:
    o = c.v("obj")
    stype = c.pick(("struct conn", "struct session", "struct node", "struct job", "struct client"))
    variant = c.pick(("field", "list", "error_path", "dangling"))
    if variant == "field":
        fld = c.pick(("fd", "id", "len", "status", "refs", "code"))
        rv = c.v("rc")
        setup = [f"{c.pick(('close', 'release_fd', 'unregister'))}({o}->{c.pick(('sock', 'handle', 'fd2'))});"]
        flawed = [f"free({o});", f"return {o}->{fld};"]
        fixed = [f"int {rv} = {o}->{fld};", f"free({o});", f"return {rv};"]
        return _Spec("int", [(stype + " *", o)], c.ifail, setup, flawed, fixed, [], [o],
                     verbs=("close", "destroy", "drop", "finish", "release"))
    if variant == "list":
        cur, nxt = c.v("ptr"), c.v("ptr")
        setup = [f"{c.tn('struct node *', cur)} = {o};"]
        body = [f"free({cur}->{c.pick(('data', 'name', 'value', 'buf'))});", f"free({cur});"]
        flawed = [FOR(f"{cur} = {o}; {c.notnull(cur)}; {cur} = {cur}->next", body)]
        fixed = [WHILE(c.notnull(cur), [f"{c.tn('struct node *', nxt)} = {cur}->next;"] + body + [f"{cur} = {nxt};"])]
        return _Spec("void", [("struct node *", o)], None, setup, flawed, fixed, [], [o],
                     verbs=("free", "destroy", "clear", "drop"), nouns=("list", "chain", "queue", "nodes"))
    if variant == "error_path":
        buf, rc, src = c.v("buf"), c.v("rc"), c.v("src")
        size = c.size()
        setup = [f"{c.tn('char *', buf)} = malloc({size});", c.guard(c.isnull(buf), c.ifail),
                 f"int {rc} = {c.pick(('fill_buffer', 'read_into', 'decode_into'))}({buf}, {size}, {src});"]
        logl = f'{c.logf}("decode failed: %d", {rc});'
        use = f"{c.helper()}({buf});"
        flawed = [IF(f"{rc} < 0", [f"free({buf});", logl]), use]
        fixed = [IF(f"{rc} < 0", [f"free({buf});", logl, f"return {rc};"]), use]
        return _Spec("int", [("const char *", src)], c.ifail, setup, flawed, fixed, [f"return {rc};"], [src])
    fld, flag, lenf = c.pick(("buf", "name", "data", "scratch")), c.pick(("dirty", "active", "reuse")), c.pick(("len", "used", "size"))
    shared = f"{o}->{lenf} = 0;"
    flawed = [f"free({o}->{fld});", shared, IF(f"{o}->{flag}", [f"{o}->{fld}[0] = '\\0';"])]
    fixed = [f"free({o}->{fld});", f"{o}->{fld} = NULL;", shared,
             IF(f"{o}->{flag} && {c.notnull(f'{o}->{fld}')}", [f"{o}->{fld}[0] = '\\0';"])]
    return _Spec("void", [(stype + " *", o)], None, [], flawed, fixed, [], [o],
                 verbs=("reset", "clear", "recycle", "flush"))


def _fam_415(c: _Ctx) -> _Spec:
    p, src, rc = c.v("ptr"), c.v("src"), c.v("rc")
    size = c.size()
    variant = c.pick(("error_path", "twice", "branch"))
    if variant == "error_path":
        setup = [f"{c.tn('char *', p)} = malloc({size});", c.guard(c.isnull(p), c.ifail),
                 f"int {rc} = {c.pick(('parse_into', 'load_into', 'fill'))}({p}, {size}, {src});"]
        flawed = [IF(f"{rc} != 0", [f"free({p});"]), f"free({p});"]
        fixed = c.pick((
            [IF(f"{rc} != 0", [f"free({p});", f"return {rc};"]), f"free({p});"],
            [IF(f"{rc} != 0", [f"free({p});", f"{p} = NULL;"]), f"free({p});"],
        ))
        return _Spec("int", [("const char *", src)], c.ifail, setup, flawed, fixed, [f"return {rc};"], [src])
    setup = [f"{c.tn('char *', p)} = {c.pick(('strdup', 'xstrdup', 'copy_string'))}({src});",
             c.guard(c.isnull(p), c.ifail), f"{c.helper()}({p});"]
    if variant == "twice":
        mid = c.pick((f'{c.logd}("done");', f"{rc} = 0;", f"{c.helper()}(NULL);"))
        flawed = [f"free({p});", mid, f"free({p});"]
        fixed = c.pick((
            [f"free({p});", f"{p} = NULL;", mid, f"free({p});"],
            [f"free({p});", mid],
        ))
    else:
        cond = c.pick((f"{rc} < 0", f"{rc} == ERR_AGAIN", f"!{rc}"))
        logl = f'{c.logd}("early release");'
        flawed = [IF(cond, [logl, f"free({p});"]), f"free({p});"]
        fixed = [IF(cond, [logl, f"free({p});"], [f"free({p});"])]
    setup.insert(0, f"int {rc} = {c.pick(('0', '-1', 'check_state()'))};")
    return _Spec("int", [("const char *", src)], c.ifail, setup, flawed, fixed, [f"return {rc};"], [src])


def _fam_476(c: _Ctx) -> _Spec:
    variant = c.pick(("malloc", "getenv", "strchr", "fopen", "lookup"))
    if variant == "malloc":
        p, n = c.v("ptr"), c.v("len")
        setup = [f"{c.tn('char *', p)} = malloc({n});"]
        use = c.pick((f"memset({p}, 0, {n});", f"{p}[0] = '\\0';", f"memcpy({p}, \"init\", 5);"))
        flawed = [use]
        fixed = [c.guard(c.isnull(p), c.ifail), use]
        tail = [f"{c.helper()}({p});", f"free({p});", "return 0;"]
        return _Spec("int", [("size_t", n)], c.ifail, setup, flawed, fixed, tail)
    if variant == "getenv":
        e, dst, cap, n = c.v("env"), c.v("buf"), c.v("len"), c.v("count")
        var = c.pick(("HOME", "TMPDIR", "USER", "SHELL", "APP_CONFIG", "XDG_DATA_HOME"))
        setup = [f'{c.tn("const char *", e)} = getenv("{var}");']
        core = [f"size_t {n} = strlen({e});", c.guard(f"{n} >= {cap}", c.ifail), f"memcpy({dst}, {e}, {n} + 1);"]
        flawed = core
        fixed = c.pick((
            [c.guard(c.isnull(e), c.ifail)] + core,
            [IF(c.isnull(e), [f'{e} = "{c.pick(("/tmp", ".", "/var/tmp"))}";'])] + core,
        ))
        return _Spec("int", [("char *", dst), ("size_t", cap)], c.ifail, setup, flawed, fixed, ["return 0;"], [dst],
                     nouns=("home", "env", "config_dir", "setting"))
    if variant == "strchr":
        line, sep = c.v("src"), c.v("sep")
        ch = c.pick(("=", ":", ",", ";", " "))
        setup = [f"{c.tn('char *', sep)} = strchr({line}, '{ch}');"]
        core = [f"*{sep} = '\\0';", f"return {sep} + 1;"]
        return _Spec("char *", [("char *", line)], "NULL", setup, core, [c.guard(c.isnull(sep), "NULL")] + core, [],
                     [line], verbs=("split", "parse", "cut", "value_of"), nouns=("pair", "option", "field", "kv"))
    if variant == "fopen":
        path, fp, out, cap = c.v("src"), c.v("fp"), c.v("buf"), c.v("len")
        mode = c.pick(('"r"', '"rb"', '"rt"'))
        setup = [f"{c.tn('FILE *', fp)} = fopen({path}, {mode});"]
        core = [IF(f"fgets({out}, {cap}, {fp}) == NULL", c.fail(c.ifail, pre=[f"fclose({fp});"])), f"fclose({fp});"]
        fixed = [c.guard(c.isnull(fp), c.ifail)] + core
        return _Spec("int", [("const char *", path), ("char *", out), ("int", cap)], c.ifail, setup, core, fixed,
                     ["return 0;"], [path, out], verbs=("read", "load", "slurp", "peek"))
    tbl, key, e = c.v("obj"), c.v("src"), c.v("ptr")
    fld = c.pick(("value", "count", "id", "weight"))
    setup = [f"{c.tn('struct entry *', e)} = {c.pick(('table_find', 'lookup', 'map_get', 'find_entry'))}({tbl}, {key});"]
    core = [f"return {e}->{fld};"]
    fail = c.pick(("-1", "0"))
    return _Spec("int", [("struct table *", tbl), ("const char *", key)], fail, setup, core,
                 [c.guard(c.isnull(e), fail)] + core, [], [tbl, key], verbs=("get", "lookup", "find", "query"))


def _fam_193(c: _Ctx) -> _Spec:
    variant = c.pick(("loop_le", "terminator", "read", "alloc_len", "one_based"))
    if variant == "loop_le":
        arr, i, n = c.v("arr"), c.v("idx"), c.pick(("8", "10", "16", "32", "64", "NSLOTS", "MAX_ITEMS"))
        et = c.pick(("int", "char", "unsigned int", "long", "double"))
        bound = n if c.coin(0.7) else f"{c.sz(arr)} / {c.sz(arr + '[0]')}"
        val = c.pick((f"{i} * 2", "0", f"{i}", "-1"))
        setup = [f"{et} {arr}[{n}];", f"int {i};"]
        flawed = [FOR(f"{i} = 0; {i} <= {bound}; {i}++", [f"{arr}[{i}] = {val};"])]
        good = c.pick((f"{i} < {bound}", f"{i} < {bound}", f"{i} <= {bound} - 1"))
        fixed = [FOR(f"{i} = 0; {good}; {i}++", [f"{arr}[{i}] = {val};"])]
        return _Spec("int", [], c.ifail, setup, flawed, fixed, [f"return {c.helper()}({arr}, {n});"],
                     verbs=("init", "reset", "fill", "clear"), nouns=("table", "slots", "counters", "grid"))
    if variant == "terminator":
        buf, src = c.v("buf"), c.v("src")
        setup = [f"char {buf}[{c.size()}];"]
        s = c.sz(buf)
        flawed = [f"strncpy({buf}, {src}, {s});", f"{buf}[{s}] = '\\0';"]
        fixed = [f"strncpy({buf}, {src}, {s} - 1);", f"{buf}[{s} - 1] = '\\0';"]
        return _Spec("int", [("const char *", src)], c.ifail, setup, flawed, fixed, _use_buf_tail(c, buf), [src])
    if variant == "read":
        buf, fd, n = c.v("buf"), c.v("fd"), c.v("rc")
        setup = [f"char {buf}[{c.size()}];", f"ssize_t {n};"]
        s = c.sz(buf)
        after = [c.guard(f"{n} < 0", c.ifail), f"{buf}[{n}] = '\\0';"]
        flawed = [f"{n} = read({fd}, {buf}, {s});"] + after
        fixed = [f"{n} = read({fd}, {buf}, {s} - 1);"] + after
        return _Spec("int", [("int", fd)], c.ifail, setup, flawed, fixed, _use_buf_tail(c, buf),
                     verbs=("read", "recv", "poll", "drain"))
    if variant == "alloc_len":
        p, src, ln = c.v("ptr"), c.v("src"), c.v("len")
        setup = [f"{c.tn('char *', p)};"]
        flawed = [f"{p} = malloc({ln});", c.guard(c.isnull(p), "NULL"), f"memcpy({p}, {src}, {ln});", f"{p}[{ln}] = '\\0';"]
        fixed = c.pick((
            [f"{p} = malloc({ln} + 1);", c.guard(c.isnull(p), "NULL"), f"memcpy({p}, {src}, {ln});", f"{p}[{ln}] = '\\0';"],
            [f"{p} = malloc({ln});", c.guard(c.isnull(p), "NULL"), f"memcpy({p}, {src}, {ln} - 1);", f"{p}[{ln} - 1] = '\\0';"],
        ))
        return _Spec("char *", [("const char *", src), ("size_t", ln)], "NULL", setup, flawed, fixed,
                     [f"return {p};"], [src], verbs=("dup", "copy", "extract", "slice"))
    v, n, i, acc = c.v("arr"), c.v("count"), c.v("idx"), c.v("acc")
    setup = [f"long {acc} = 0;", f"int {i};"]
    flawed = [FOR(f"{i} = 1; {i} <= {n}; {i}++", [f"{acc} += {v}[{i}];"])]
    fixed = c.pick((
        [FOR(f"{i} = 0; {i} < {n}; {i}++", [f"{acc} += {v}[{i}];"])],
        [FOR(f"{i} = 1; {i} <= {n}; {i}++", [f"{acc} += {v}[{i} - 1];"])],
    ))
    return _Spec("long", [("const int *", v), ("int", n)], "0", setup, flawed, fixed, [f"return {acc};"], [v],
                 verbs=("sum", "total", "accumulate", "score"))


def _whitelist(c: _Ctx, arg: str, fail: str | None) -> tuple:
    j = c.v("k")
    extra = c.pick(((".",), (".", "-"), ("_", "-"), ("/", ".", "_")))
    conds = [f"!isalnum((unsigned char){arg}[{j}])"] + [f"{arg}[{j}] != '{ch}'" for ch in extra]
    return FOR(f"size_t {j} = 0; {arg}[{j}] != '\\0'; {j}++", [c.guard(" && ".join(conds), fail)])


def _metachar_check(c: _Ctx, arg: str, fail: str | None) -> tuple:
    meta = c.pick(('";|&$`<>"', '";|&$`<>()\\n"', '"|;&`$\\\\\\n"', '"&;|$`"'))
    return c.guard(f"strpbrk({arg}, {meta}) != NULL", fail)


def _fam_78(c: _Ctx) -> _Spec:
    arg, cmd = c.v("src"), c.v("cmd")
    size = c.pick(("128", "256", "512", "CMD_MAX", "1024"))
    fail = c.ifail
    variant = c.pick(("system", "system", "popen", "strcat"))
    tmpl, prog = c.pick((('"ping -c 1 %s"', "ping"), ('"nslookup %s"', "nslookup"), ('"rm -f %s"', "rm"),
                         ('"tar xf %s"', "tar"), ('"convert %s out.png"', "convert"), ('"ls -l %s"', "ls")))
    setup = [f"char {cmd}[{size}];"]
    check = c.pick(("whitelist", "strpbrk"))

    def validated() -> tuple:
        return _whitelist(c, arg, fail) if check == "whitelist" else _metachar_check(c, arg, fail)

    if variant == "system":
        build = f"snprintf({cmd}, {c.sz(cmd)}, {tmpl}, {arg});"
        run = f"return system({cmd});"
        flawed = [build, run]
        if c.coin(0.25):
            av = c.v("arr")
            fixed = [f'char *{av}[] = {{ "{prog}", {arg}, NULL }};',
                     f'return {c.pick(("execvp", "run_argv", "spawn_argv"))}("{prog}", {av});']
        else:
            fixed = [validated(), build, run]
        return _Spec("int", [("const char *", arg)], fail, setup, flawed, fixed, [], [arg],
                     verbs=("run", "exec", "do", "invoke", "launch"), nouns=("ping", "lookup", "cleanup", "convert", "job"))
    if variant == "popen":
        fp, cnt, line = c.v("fp"), c.v("count"), c.v("buf")
        setup = [f"char {cmd}[{size}];", f"char {line}[{c.pick(('128', '256'))}];", f"int {cnt} = 0;",
                 f"{c.tn('FILE *', fp)};"]
        build = f"snprintf({cmd}, {c.sz(cmd)}, \"grep -c %s /var/log/app.log\", {arg});"
        core = [build, f'{fp} = popen({cmd}, "r");', c.guard(c.isnull(fp), fail),
                WHILE(f"fgets({line}, {c.sz(line)}, {fp}) != NULL", [f"{cnt}++;"]), f"pclose({fp});"]
        return _Spec("int", [("const char *", arg)], fail, setup, core, [validated()] + core, [f"return {cnt};"], [arg],
                     verbs=("count", "grep", "search", "scan"), nouns=("matches", "log", "hits"))
    prefix = tmpl.split("%s")[0] + '"'
    core = [f"strcpy({cmd}, {prefix});", f"strncat({cmd}, {arg}, {c.sz(cmd)} - strlen({cmd}) - 1);",
            f"return system({cmd});"]
    return _Spec("int", [("const char *", arg)], fail, setup, core, [validated()] + core, [], [arg],
                 verbs=("run", "exec", "do", "invoke"), nouns=("tool", "command", "helper", "job"))


def _fam_252(c: _Ctx) -> _Spec:
    variant = c.pick(("fread", "read", "setuid", "snprintf", "realloc"))
    fail = c.ifail
    if variant == "fread":
        fp, hdr = c.v("fp"), c.v("data")
        htype = c.pick(("struct header", "struct rec_hdr", "struct msg_head"))
        fld = c.pick(("len", "magic", "type", "count"))
        setup = [f"{htype} {hdr};"]
        call = f"fread(&{hdr}, {c.sz(hdr)}, 1, {fp})"
        flawed = [f"{call};"]
        fixed = [c.guard(f"{call} != 1", fail)]
        return _Spec("int", [("FILE *", fp)], fail, setup, flawed, fixed, [f"return (int){hdr}.{fld};"], [fp],
                     verbs=("read", "load", "parse"), nouns=("header", "record", "magic"))
    if variant == "read":
        fd, buf, r = c.v("fd"), c.v("buf"), c.v("rc")
        setup = [f"char {buf}[{c.size()}];", f"memset({buf}, 0, {c.sz(buf)});"]
        call = f"read({fd}, {buf}, {c.sz(buf)} - 1)"
        flawed = [f"{call};"]
        fixed = c.pick(([f"ssize_t {r} = {call};", c.guard(f"{r} <= 0", fail)], [c.guard(f"{call} < 0", fail)]))
        return _Spec("int", [("int", fd)], fail, setup, flawed, fixed, [f"return {c.helper()}({buf});"],
                     verbs=("read", "recv", "fetch"))
    if variant == "setuid":
        uid, gid, prog = c.v("flags"), c.v("mode"), c.v("src")
        both = c.coin()
        flawed = ([f"setgid({gid});"] if both else []) + [f"setuid({uid});"]
        err = [f'perror("{c.pick(("setuid", "drop privileges", "priv"))}");'] if c.coin() else []
        fixed = ([c.guard(f"setgid({gid}) != 0", fail, pre=err)] if both else []) + \
            [c.guard(f"setuid({uid}) {c.pick(('!= 0', '== -1', '< 0'))}", fail, pre=err)]
        tail = [f'return execl({prog}, {prog}, (char *)NULL);']
        return _Spec("int", [("uid_t", uid), ("gid_t", gid), ("const char *", prog)], fail, [], flawed, fixed, tail,
                     [prog], verbs=("drop", "switch", "become", "run_as"), nouns=("user", "privs", "identity"))
    if variant == "snprintf":
        d, n, path, r = c.v("dir"), c.v("name"), c.v("buf"), c.v("rc")
        setup = [f"char {path}[{c.size()}];"]
        call = f'snprintf({path}, {c.sz(path)}, "%s/%s", {d}, {n})'
        flawed = [f"{call};"]
        fixed = [f"int {r} = {call};", c.guard(f"{r} < 0 || (size_t){r} >= {c.sz(path)}", fail)]
        tail = [c.pick((f"return open({path}, O_RDONLY);", f"return {c.helper()}({path});"))]
        return _Spec("int", [("const char *", d), ("const char *", n)], fail, setup, flawed, fixed, tail, [d, n],
                     verbs=("open", "load", "stat", "touch"), nouns=("file", "path", "config", "entry"))
    b, need, tmp = c.v("obj"), c.v("len"), c.v("ptr")
    fld = c.pick(("data", "buf", "items", "mem"))
    capf = c.pick(("cap", "size", "alloc"))
    flawed = [f"{b}->{fld} = realloc({b}->{fld}, {need});", f"{b}->{capf} = {need};"]
    fixed = [f"{c.tn('char *', tmp)} = realloc({b}->{fld}, {need});", c.guard(c.isnull(tmp), fail),
             f"{b}->{fld} = {tmp};", f"{b}->{capf} = {need};"]
    setup = [IF(f"{need} <= {b}->{capf}", ["return 0;"])]
    return _Spec("int", [("struct buffer *", b), ("size_t", need)], fail, setup, flawed, fixed, ["return 0;"], [b],
                 verbs=("grow", "reserve", "resize", "ensure"), nouns=("buffer", "vector", "array", "storage"))


def _fam_369(c: _Ctx) -> _Spec:
    variant = c.pick(("avg", "mod", "ratio"))
    if variant == "avg":
        v, n, s, i = c.v("arr"), c.v("count"), c.v("acc"), c.v("idx")
        setup = [f"long {s} = 0;", f"int {i};"]
        loop = FOR(f"{i} = 0; {i} < {n}; {i}++", [f"{s} += {v}[{i}];"])
        flawed = [loop, f"return (int)({s} / {n});"]
        fixed = c.pick(([c.guard(f"{n} <= 0", "0"), loop, flawed[1]],
                        [loop, c.guard(f"{n} == 0", "0"), flawed[1]]))
        return _Spec("int", [("const int *", v), ("int", n)], "0", setup, flawed, fixed, [], [v],
                     verbs=("average", "mean", "compute"), nouns=("score", "latency", "values", "samples"))
    if variant == "mod":
        h, nb, key = c.v("acc"), c.v("count"), c.v("src")
        setup = [f"unsigned long {h} = {c.pick(('hash_str', 'fnv1a', 'djb2'))}({key});"]
        flawed = [f"return {h} % {nb};"]
        return _Spec("size_t", [("const char *", key), ("size_t", nb)], "0", setup, flawed,
                     [c.guard(f"{nb} == 0", "0")] + flawed, [], [key], verbs=("bucket", "slot", "shard"),
                     nouns=("index", "for", "of"))
    part, whole = c.v("count"), c.v("esize")
    flawed = [f"return {part} * 100 / {whole};"]
    return _Spec("int", [("int", part), ("int", whole)], "0", [], flawed, [c.guard(f"{whole} == 0", "0")] + flawed,
                 [], verbs=("percent", "ratio", "share"), nouns=("done", "used", "progress"))


def _fam_22(c: _Ctx) -> _Spec:
    name, path = c.v("name"), c.v("buf")
    root = c.pick(('"/var/www"', '"/srv/data"', "ROOT_DIR", '"./uploads"'))
    mode = c.pick(('"rb"', '"r"'))
    setup = [f"char {path}[{c.size()}];"]
    core = [f'snprintf({path}, {c.sz(path)}, "%s/%s", {root}, {name});',
            f"return fopen({path}, {mode});"]
    check = c.pick((
        c.guard(f"{name}[0] == '/' || strstr({name}, \"..\") != NULL", "NULL"),
        c.guard(f"strstr({name}, \"..\") != NULL || strchr({name}, '/') != NULL", "NULL"),
    ))
    return _Spec("FILE *", [("const char *", name)], "NULL", setup, core, [check] + core, [], [name],
                 verbs=("open", "serve", "fetch", "load"), nouns=("upload", "asset", "file", "page"))


_FAMILIES: dict[str, Callable[[_Ctx], _Spec]] = {
    "CWE-121": _fam_121, "CWE-122": _fam_122, "CWE-134": _fam_134, "CWE-190": _fam_190,
    "CWE-416": _fam_416, "CWE-415": _fam_415, "CWE-476": _fam_476, "CWE-193": _fam_193,
    "CWE-78": _fam_78, "CWE-252": _fam_252, "CWE-369": _fam_369, "CWE-22": _fam_22,
}


# --------------------------------------------------------------------------------------
# Benign distractors: ordinary utilities that use risky-looking APIs safely.
# Each returns (ret, params, fail, body, verbs, nouns).
# --------------------------------------------------------------------------------------


def _d_sum(c: _Ctx):
    v, n, s, i = c.v("arr"), c.v("count"), c.v("acc"), c.v("idx")
    et = c.pick(("int", "long", "unsigned int", "short"))
    body = [f"long {s} = 0;", f"int {i};", FOR(f"{i} = 0; {i} < {n}; {i}++", [f"{s} += {v}[{i}];"]), f"return {s};"]
    return "long", [(f"const {et} *", v), ("int", n)], "0", body, ("sum", "total", "add"), ("values", "array", "list")


def _d_hash(c: _Ctx):
    s, h, ch = c.v("src"), c.v("acc"), c.v("k")
    seed = c.pick(("5381", "0", "2166136261u", "7"))
    step = c.pick((f"{h} = (({h} << 5) + {h}) + {ch};", f"{h} = ({h} ^ {ch}) * 16777619u;", f"{h} = {h} * 31 + {ch};"))
    body = [f"unsigned long {h} = {seed};", f"int {ch};", WHILE(f"({ch} = (unsigned char)*{s}++) != 0", [step]),
            f"return {h};"]
    return "unsigned long", [("const char *", s)], "0", body, ("hash", "digest", "mix"), ("string", "key", "name")


def _d_list_len(c: _Ctx):
    node, n = c.v("obj"), c.v("count")
    body = [f"size_t {n} = 0;", WHILE(c.notnull(node), [f"{n}++;", f"{node} = {node}->next;"]), f"return {n};"]
    return "size_t", [("const struct node *", node)], "0", body, ("count", "length", "size"), ("list", "chain", "queue")


def _d_list_free(c: _Ctx):
    head, nxt = c.v("obj"), c.v("ptr")
    body = [WHILE(c.notnull(head), [f"{c.tn('struct node *', nxt)} = {head}->next;",
                                    f"free({head}->{c.pick(('data', 'name', 'value'))});", f"free({head});",
                                    f"{head} = {nxt};"])]
    return "void", [("struct node *", head)], None, body, ("free", "destroy", "release"), ("list", "nodes", "chain")


def _d_state(c: _Ctx):
    s, stv, words = c.v("src"), c.v("state"), c.v("count")
    body = [f"int {stv} = 0;", f"int {words} = 0;",
            WHILE(f"*{s} != '\\0'", [
                SWITCH(stv, [("case 0", [IF(f"*{s} != ' '", [f"{stv} = 1;", f"{words}++;"]), "break;"]),
                             ("case 1", [IF(f"*{s} == ' '", [f"{stv} = 0;"]), "break;"]),
                             ("default", [f"{stv} = 0;", "break;"])]),
                f"{s}++;"]),
            f"return {words};"]
    return "int", [("const char *", s)], "0", body, ("count", "scan", "tokenize"), ("words", "tokens", "fields")


def _d_safe_copy(c: _Ctx):
    dst, src, cap, n = c.v("buf"), c.v("src"), c.v("len"), c.v("count")
    fail = c.ifail
    style = c.pick(("strncpy", "check_strcpy", "memcpy", "snprintf"))
    body: list = [c.guard(f"{c.isnull(dst)} || {cap} == 0", fail)]
    if style == "strncpy":
        body += [f"strncpy({dst}, {src}, {cap} - 1);", f"{dst}[{cap} - 1] = '\\0';"]
    elif style == "check_strcpy":
        body += [c.guard(f"strlen({src}) >= {cap}", fail), f"strcpy({dst}, {src});"]
    elif style == "memcpy":
        body += [f"size_t {n} = strlen({src});", c.guard(f"{n} >= {cap}", fail), f"memcpy({dst}, {src}, {n} + 1);"]
    else:
        body += [f'snprintf({dst}, {cap}, "%s", {src});']
    body.append("return 0;")
    return "int", [("char *", dst), ("const char *", src), ("size_t", cap)], fail, body, \
        ("copy", "set", "assign", "store"), ("string", "name", "label", "text")


def _d_clamp(c: _Ctx):
    v, lo, hi = c.v("acc"), c.v("k"), c.v("count")
    t = c.pick(("int", "long", "double"))
    body = [IF(f"{v} < {lo}", [f"return {lo};"]), IF(f"{v} > {hi}", [f"return {hi};"]), f"return {v};"]
    return t, [(t, v), (t, lo), (t, hi)], "0", body, ("clamp", "limit", "bound"), ("value", "level", "speed")


def _d_squares(c: _Ctx):
    n, i, s = c.v("count"), c.v("idx"), c.v("acc")
    body = [f"long {s} = 0;", f"int {i};", FOR(f"{i} = 1; {i} <= {n}; {i}++", [f"{s} += (long){i} * {i};"]), f"return {s};"]
    return "long", [("int", n)], "0", body, ("sum", "series", "compute"), ("squares", "terms", "weights")


def _d_reverse(c: _Ctx):
    s, i, j, t = c.v("buf"), c.v("idx"), c.v("idx"), c.v("k")
    body = [IF(c.isnull(s), ["return;"]), f"size_t {j} = strlen({s});", f"size_t {i} = 0;",
            IF(f"{j} == 0", ["return;"]), f"{j}--;",
            WHILE(f"{i} < {j}", [f"char {t} = {s}[{i}];", f"{s}[{i}] = {s}[{j}];", f"{s}[{j}] = {t};", f"{i}++;", f"{j}--;"])]
    return "void", [("char *", s)], None, body, ("reverse", "flip", "mirror"), ("string", "word", "buffer")


def _d_dup(c: _Ctx):
    s, n, p = c.v("src"), c.v("len"), c.v("ptr")
    alloc = c.pick((f"calloc({n} + 1, 1)", f"malloc({n} + 1)"))
    body = [f"size_t {n} = strlen({s});", f"{c.tn('char *', p)} = {alloc};", c.guard(c.isnull(p), "NULL"),
            f"memcpy({p}, {s}, {n});", f"{p}[{n}] = '\\0';", f"return {p};"]
    return "char *", [("const char *", s)], "NULL", body, ("dup", "clone", "copy"), ("string", "text", "name")


def _d_destroy(c: _Ctx):
    o = c.v("obj")
    fld = c.pick(("buf", "name", "data"))
    body = [IF(c.isnull(o), ["return;"]), f"free({o}->{fld});", f"{o}->{fld} = NULL;", f"free({o});"]
    return "void", [(c.pick(("struct ctx *", "struct session *", "struct conn *")), o)], None, body, \
        ("destroy", "free", "close"), ("context", "session", "conn")


def _d_system_const(c: _Ctx):
    rc = c.v("rc")
    cmd = c.pick(('"sync"', '"/usr/bin/true"', '"clear"', '"date > /dev/null"'))
    body = [f"int {rc} = system({cmd});", IF(f"{rc} != 0", [f'{c.logf}("command failed: %d", {rc});']), f"return {rc};"]
    return "int", [], c.ifail, body, ("flush", "refresh", "sync"), ("disk", "screen", "state")


def _d_report(c: _Ctx):
    label, val, msg = c.v("msg"), c.v("acc"), c.v("src")
    body = [f'printf("%s: %d\\n", {label}, {val});',
            IF(c.notnull(msg), [c.pick((f'fprintf(stderr, "note: %s\\n", {msg});', f'syslog(LOG_INFO, "%s", {msg});'))])]
    return "void", [("const char *", label), ("int", val), ("const char *", msg)], None, body, \
        ("print", "report", "show"), ("stat", "metric", "result")


def _d_config(c: _Ctx):
    path, fp, line, n = c.v("src"), c.v("fp"), c.v("buf"), c.v("count")
    body = [f"char {line}[{c.pick(('128', '256', '512'))}];", f"int {n} = 0;",
            f'{c.tn("FILE *", fp)} = fopen({path}, "r");', c.guard(c.isnull(fp), c.ifail),
            WHILE(f"fgets({line}, {c.sz(line)}, {fp}) != NULL", [IF(f"{line}[0] != '#'", [f"{n}++;"])]),
            f"fclose({fp});", f"return {n};"]
    return "int", [("const char *", path)], c.ifail, body, ("count", "load", "read"), ("config", "lines", "rules")


def _d_bits(c: _Ctx):
    x, n = c.v("flags"), c.v("count")
    body = [f"int {n} = 0;", WHILE(x, [f"{n} += {x} & 1;", f"{x} >>= 1;"]), f"return {n};"]
    return "int", [("unsigned int", x)], "0", body, ("count", "pop", "weigh"), ("bits", "ones", "flags")


def _d_getenv(c: _Ctx):
    e = c.v("env")
    var = c.pick(("HOME", "TMPDIR", "LANG", "APP_MODE"))
    body = [f'{c.tn("const char *", e)} = getenv("{var}");', IF(c.isnull(e), [f'return "{c.pick(("/tmp", "C", "default"))}";']),
            f"return {e};"]
    return "const char *", [], "NULL", body, ("get", "resolve", "find"), ("home", "locale", "mode")


def _d_trim(c: _Ctx):
    s, n = c.v("buf"), c.v("len")
    body = [f"size_t {n} = strlen({s});",
            WHILE(f"{n} > 0 && isspace((unsigned char){s}[{n} - 1])", [f"{s}[--{n}] = '\\0';"]), f"return {n};"]
    return "size_t", [("char *", s)], "0", body, ("trim", "strip", "chomp"), ("line", "string", "input")


def _d_checked_alloc(c: _Ctx):
    n, esz, p = c.v("count"), c.v("esize"), c.v("ptr")
    body = [c.guard(f"{esz} != 0 && {n} > SIZE_MAX / {esz}", "NULL"), f"{c.tn('void *', p)} = malloc({n} * {esz});",
            c.guard(c.isnull(p), "NULL"), f"memset({p}, 0, {n} * {esz});", f"return {p};"]
    return "void *", [("size_t", n), ("size_t", esz)], "NULL", body, ("alloc", "zalloc", "new"), ("array", "block", "vec")


def _d_fixed_copy(c: _Ctx):
    dst, src = c.v("obj"), c.v("ptr")
    st = c.pick(("struct point", "struct header", "struct stats"))
    body = [c.guard(f"{c.isnull(dst)} || {c.isnull(src)}", c.ifail), f"memcpy({dst}, {src}, {c.sz('*' + dst)});", "return 0;"]
    return "int", [(st + " *", dst), (f"const {st} *", src)], c.ifail, body, ("copy", "clone", "assign"), ("point", "header", "stats")


_DISTRACTORS = (_d_sum, _d_hash, _d_list_len, _d_list_free, _d_state, _d_safe_copy, _d_safe_copy, _d_clamp,
                _d_squares, _d_reverse, _d_dup, _d_destroy, _d_system_const, _d_report, _d_config, _d_bits,
                _d_getenv, _d_trim, _d_checked_alloc, _d_fixed_copy)


# --------------------------------------------------------------------------------------
# Benign filler statements placed around the core (identical in both twins).  They use
# the same risky APIs and guard shapes as fixes do, so neither is a label on its own.
# --------------------------------------------------------------------------------------


def _f_log(c: _Ctx, fail, ptrs):
    return [c.pick((f'{c.logd}("enter %s", __func__);', f'{c.logd}("start");', f"trace_event({c.rng.randrange(1, 99)});"))]


def _f_counter(c: _Ctx, fail, ptrs):
    acc, k = c.v("acc"), c.v("k")
    lim = c.pick(("4", "8", "16", "10", "3"))
    cmp = c.pick(("<", "<="))
    op = c.pick(("+=", "^=", "|="))
    out = [f"int {acc} = 0;", f"int {k};", FOR(f"{k} = 0; {k} {cmp} {lim}; {k}++", [f"{acc} {op} {k} * {c.rng.randrange(2, 9)};"])]
    if c.coin(0.4):
        out.append(c.guard(f"{acc} < 0", fail))
    return out


def _f_nullparam(c: _Ctx, fail, ptrs):
    if not ptrs:
        return _f_log(c, fail, ptrs)
    return [c.guard(c.isnull(c.pick(ptrs)), fail)]


def _f_flags(c: _Ctx, fail, ptrs):
    fl = c.v("flags")
    out = [f"unsigned int {fl} = 0x{c.rng.randrange(1, 255):x};",
           IF(f"{fl} & 0x1", [f"{fl} |= 0x4;"], [f"{fl} &= ~0x2u;"] if c.coin() else None)]
    if c.coin():
        out.append(f"(void){fl};")
    return out


def _f_while(c: _Ctx, fail, ptrs):
    t = c.v("tries")
    return [f"int {t} = {c.rng.randrange(2, 6)};", WHILE(f"{t} > 0", [f"{t}--;"])]


def _f_tag(c: _Ctx, fail, ptrs):
    tag = c.v("tag")
    size = c.pick(("8", "16", "32"))
    word = c.pick(("unit", "core", "io", "net"))
    s = c.sz(tag)
    return [f"char {tag}[{size}];"] + c.pick((
        [f'snprintf({tag}, {s}, "%s%d", "{word}", {c.rng.randrange(10)});'],
        [f'strncpy({tag}, "{word}", {s} - 1);', f"{tag}[{s} - 1] = '\\0';"],
        [f"memset({tag}, 0, {s});"],
    ))


def _f_switch(c: _Ctx, fail, ptrs):
    stv = c.v("state")
    return [f"int {stv} = {c.rng.randrange(3)};",
            SWITCH(stv, [("case 0", [f"{stv} = 1;", "break;"]), ("case 1", [f"{stv} = 2;", "break;"]),
                         ("default", [f"{stv} = 0;", "break;"])])]


def _f_scratch(c: _Ctx, fail, ptrs):
    sc = c.v("scratch")
    return [f"{c.tn('char *', sc)} = calloc(1, {c.pick(('16', '32', '64'))});",
            IF(c.notnull(sc), [f"{sc}[0] = 'x';", f"free({sc});"])]


def _f_getenv(c: _Ctx, fail, ptrs):
    vb = c.v("verbose")
    return [f"int {vb} = 0;", IF(f'getenv("{c.pick(("DEBUG", "VERBOSE", "TRACE"))}") != NULL', [f"{vb} = 1;"])]


def _f_print(c: _Ctx, fail, ptrs):
    w = c.pick(("ready", "begin", "ok", "step"))
    return [c.pick((f'printf("{w}\\n");', f'fprintf(stderr, "%s\\n", "{w}");', f'printf("%d\\n", {c.rng.randrange(100)});'))]


def _f_stat(c: _Ctx, fail, ptrs):
    return [f"{c.pick(('stats_inc', 'counter_bump', 'metrics_add'))}(&{c.pick(('g_calls', 'g_hits', 'g_stats.calls'))});"]


_PRE = (_f_log, _f_counter, _f_nullparam, _f_flags, _f_while, _f_tag, _f_switch, _f_scratch,
        _f_getenv, _f_print, _f_stat)
_POST = (_f_log, _f_print, _f_stat, _f_flags, _f_scratch)


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _render_func(c: _Ctx, ret: str, name: str, params: list, body: list) -> str:
    st = c.st
    ps = ", ".join(c.tn(t, n) for t, n in params) or "void"
    quals = "static " if st.static else ""
    if st.ret_nl:
        lines = [quals + ret.rstrip(), f"{name}({ps})"]
    else:
        lines = [quals + c.tn(ret, f"{name}({ps})")]
    if st.func_nl:
        lines.append("{")
    else:
        lines[-1] += " {"
    _render_body(st, body, 1, lines)
    lines.append("}")
    return "\n".join(_postprocess(st, ln) for ln in lines) + "\n"


class _Frame:
    """Filler/wrapping choices made once per pair so both twins share them."""

    def __init__(self, c: _Ctx, ret: str, fail: str | None, params: list, ptrs: list) -> None:
        self.params = list(params)
        self.final_ret = None if ret == "void" else c.ret(fail)
        self.pre: list = []
        for _ in range(c.pick((0, 1, 1, 2, 2, 3))):
            self.pre += c.pick(_PRE)(c, fail, ptrs)
        self.post: list = []
        for _ in range(c.pick((0, 0, 1, 1, 2))):
            self.post += c.pick(_POST)(c, fail, ptrs)
        self.pre_first = c.coin(0.3)
        self.top_comment = [c.comment()] if c.st.comments and c.coin(0.5) else []
        self.core_comment = [c.comment()] if c.st.comments and c.coin(0.5) else []
        self.blank = [""] if c.st.blank else []
        r = c.rng.random()
        self.wrap, self.wrap_arg = "none", ""
        if r < 0.14:
            arg = c.v("mode")
            self.params.append((c.pick(("int", "unsigned int", "bool")), arg))
            self.wrap, self.wrap_arg = "if_flag", arg if c.coin() else f"{arg} != 0"
        elif r < 0.24:
            self.wrap = "do0"
        elif r < 0.32 and ptrs:
            self.wrap, self.wrap_arg = "if_ptr", c.notnull(c.pick(ptrs))
        elif r < 0.38:
            self.wrap, self.wrap_arg = "once", c.v("once")

    def body(self, setup: list, core: list, tail: list) -> list:
        core = list(core)
        if self.wrap == "if_flag":
            core = [IF(self.wrap_arg, core)]
        elif self.wrap == "if_ptr":
            core = [IF(self.wrap_arg, core)]
        elif self.wrap == "do0":
            core = [DO(core, "0")]
        elif self.wrap == "once":
            core = [f"int {self.wrap_arg} = 1;", WHILE(self.wrap_arg, [f"{self.wrap_arg} = 0;"] + core)]
        head = self.pre + setup if self.pre_first else setup + self.pre
        out = self.top_comment + head
        if head:
            out += self.blank
        out += self.core_comment + core
        wrapped = self.wrap != "none"
        # With an empty tail the core itself returns: post fillers would be dead code.
        post = self.post if (tail or wrapped) else []
        end = list(tail)
        if wrapped and self.final_ret and not (end and isinstance(end[-1], str) and end[-1].startswith("return")):
            end.append(self.final_ret)  # the wrapped core may be skipped: keep a return
        if post or end:
            out += self.blank
        return out + post + end


def _make_pair(c: _Ctx, cwe: str) -> tuple[str, str]:
    spec = _FAMILIES[cwe](c)
    name = c.fname(spec.verbs, spec.nouns)
    frame = _Frame(c, spec.ret, spec.fail, spec.params, spec.ptrs)
    bad = _render_func(c, spec.ret, name, frame.params, frame.body(spec.setup, spec.flawed, spec.tail))
    good = _render_func(c, spec.ret, name, frame.params, frame.body(spec.setup, spec.fixed, spec.tail))
    return bad, good


def _make_distractor(c: _Ctx) -> str:
    ret, params, fail, body, verbs, nouns = c.pick(_DISTRACTORS)(c)
    name = c.fname(verbs, nouns)
    ptrs = [n for t, n in params if "*" in t]
    frame = _Frame(c, ret, fail, params, ptrs)
    return _render_func(c, ret, name, frame.params, frame.body([], body, []))


def generate_samples(n: int, seed: int = 0) -> list[dict]:
    """Exactly ``n`` labelled samples, deterministic for ``(n, seed)``.

    Keys: ``idx``, ``func``, ``target`` (1 vulnerable / 0 safe), ``cwe`` (family id for
    flawed functions and their fixed twins, "" for distractors), ``project``
    ("synthetic") and ``group`` (shared by a flawed function and its fixed twin; unique
    for distractors).  Split on ``group`` so twins never straddle train/test.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    n_distr = round(n * _DISTRACTOR_SHARE)
    if (n - n_distr) % 2:  # pairs need an even remainder
        n_distr += 1
    n_pairs = (n - n_distr) // 2
    kinds = ["pair"] * n_pairs + ["benign"] * n_distr
    rng.shuffle(kinds)
    # Cycle through families so every family is present even for small n.
    fams = [CWE_FAMILIES[i % len(CWE_FAMILIES)] for i in range(n_pairs)]
    rng.shuffle(fams)

    out: list[dict] = []
    fam_iter = iter(fams)
    for g, kind in enumerate(kinds):
        c = _Ctx(rng)
        if kind == "pair":
            cwe = next(fam_iter)
            bad, good = _make_pair(c, cwe)
            group = f"pair-{g:05d}"
            twins = [(bad, 1), (good, 0)]
            if rng.random() < 0.5:
                twins.reverse()
            for func, target in twins:
                out.append({"idx": len(out), "func": func, "target": target, "cwe": cwe,
                            "project": "synthetic", "group": group})
        else:
            out.append({"idx": len(out), "func": _make_distractor(c), "target": 0, "cwe": "",
                        "project": "synthetic", "group": f"benign-{g:05d}"})
    return out
