"""Find the functions of a C/C++ source file with tree-sitter.

Every `function_definition` in the tree is a function: at file scope, in namespaces,
`extern "C"` blocks, classes (inline methods), templates and preprocessor branches. The
text kept is the definition itself (specifiers, declarator and body), as in the training
data, where each sample is one function.

Broken code: tree-sitter recovers from most errors inside a function (the definition is
still found, with ERROR/MISSING nodes: the `partial` parse tier). An error in a signature
can make it swallow the following definitions into one ERROR region; inside such regions
the functions are recovered line-wise: each line that starts at column 0 and looks like a
signature (`... name(`) starts a chunk that runs to the next such line, each chunk is
re-parsed alone, and a chunk that still is no definition but has a body (`{`) is kept as a
`recovered` function (named from its signature). Declarations without a body are not
functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from streamguard.data.sources import C_EXTENSIONS

_DECLARATOR_WRAPPERS = {"pointer_declarator", "reference_declarator", "function_declarator",
                        "parenthesized_declarator", "attributed_declarator", "init_declarator"}
_NAME_NODES = {"identifier", "field_identifier", "qualified_identifier", "destructor_name", "operator_name",
               "template_function", "operator_cast", "type_identifier"}
_CONTAINERS = {"translation_unit", "declaration_list", "field_declaration_list", "linkage_specification",
               "namespace_definition", "class_specifier", "struct_specifier", "union_specifier",
               "template_declaration", "preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif",
               "preproc_elifdef", "ERROR", "export_declaration"}
# A line that starts a function at column 0: no leading blank, not a preprocessor line, a
# comment or a brace; an identifier right before the first "(" and no ";" before it.
_SIGNATURE = re.compile(r"^(?![\s#/*{}])[^;{}()\n]*?([A-Za-z_~][\w:~]*)\s*\(", re.MULTILINE)


@dataclass(frozen=True)
class FoundFunction:
    name: str
    start_line: int   # 1-based, inclusive
    end_line: int
    start_byte: int   # into the UTF-8 encoding of the decoded text
    end_byte: int
    text: str
    recovered: bool = False  # found by the line-wise recovery inside an ERROR region


def language_of(path: str) -> str | None:
    """'c' or 'cpp' from the file extension (the `dir:` source's mapping), None if not C/C++."""
    return C_EXTENSIONS.get(PurePosixPath(path).suffix.lower())


def _parser(lang: str):
    from streamguard.data.parse import _parser as parser

    return parser(lang)


def function_name(node, code: bytes) -> str:
    decl = node.child_by_field_name("declarator")
    seen = 0
    while decl is not None and decl.type in _DECLARATOR_WRAPPERS and seen < 32:
        inner = decl.child_by_field_name("declarator")
        if inner is None:  # parenthesized_declarator: its only named child
            inner = next((c for c in decl.named_children if c.type not in ("attribute_specifier",)), None)
        decl, seen = inner, seen + 1
    if decl is not None and decl.type in _NAME_NODES:
        return code[decl.start_byte:decl.end_byte].decode("utf-8", errors="replace")
    first = code[node.start_byte:node.end_byte].split(b"(", 1)[0].split()
    return first[-1].decode("utf-8", errors="replace").lstrip("*&") if first else "<anonymous>"


def _definitions(root) -> list:
    """function_definition nodes, outermost only (iterative walk through containers)."""
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        for child in reversed(node.children):
            if child.type == "function_definition":
                found.append(child)
            elif child.type in _CONTAINERS or child.child_count and child.has_error:
                stack.append(child)
    return sorted(found, key=lambda n: n.start_byte)


def _line_of(code: bytes, byte: int) -> int:
    return code.count(b"\n", 0, byte) + 1


def _function(node, code: bytes, offset: int = 0, *, recovered: bool = False, name: str | None = None) -> FoundFunction:
    start, end = offset + node.start_byte, offset + node.end_byte
    return FoundFunction(name=name or function_name(node, code[offset:]), start_line=_line_of(code, start),
                         end_line=_line_of(code, max(start, end - 1)), start_byte=start, end_byte=end,
                         text=code[start:end].decode("utf-8", errors="replace"), recovered=recovered)


def _error_regions(root) -> list[tuple[int, int]]:
    """Byte ranges of top-level nodes (and those in top-level namespace/extern blocks) that
    hold errors and are not a definition: where definitions may have been swallowed."""
    regions, stack = [], [root]
    while stack:
        node = stack.pop()
        for child in node.children:
            if child.type == "function_definition" or not child.has_error:
                continue
            if child.type in ("namespace_definition", "linkage_specification", "declaration_list"):
                stack.append(child)
            else:
                regions.append((child.start_byte, child.end_byte))
    return regions


def _recover(code: bytes, lang: str, start: int, end: int, taken: list[tuple[int, int]]) -> list[FoundFunction]:
    text = code[start:end].decode("utf-8", errors="replace")
    # Byte offsets of the signature lines (the text is valid UTF-8: the decode is exact).
    starts = [(start + len(text[:m.start()].encode()), m.group(1)) for m in _SIGNATURE.finditer(text)]
    out = []
    for i, (s, name) in enumerate(starts):
        e = starts[i + 1][0] if i + 1 < len(starts) else end
        if any(a <= s < b for a, b in taken):
            continue
        chunk = code[s:e]
        tree = _parser(lang).parse(chunk)
        defs = _definitions(tree.root_node)
        if defs:
            out += [_function(d, code, s, recovered=True) for d in defs]
            continue
        if b"{" not in chunk:
            continue  # a declaration or a macro use, not a definition
        close = chunk.rfind(b"}")
        stop = s + (close + 1 if close > chunk.find(b"{") else len(chunk.rstrip()))
        out.append(FoundFunction(name=name, start_line=_line_of(code, s), end_line=_line_of(code, max(s, stop - 1)),
                                 start_byte=s, end_byte=stop, text=code[s:stop].decode("utf-8", errors="replace"),
                                 recovered=True))
    return out


def find_functions(text: str, lang: str = "c") -> list[FoundFunction]:
    """Every function defined in `text` (a whole source file), in source order."""
    code = text.encode("utf-8", errors="replace")
    root = _parser(lang).parse(code).root_node
    found = [_function(d, code) for d in _definitions(root)]
    if root.has_error:
        taken = [(f.start_byte, f.end_byte) for f in found]
        for a, b in _error_regions(root):
            extra = _recover(code, lang, a, b, taken)
            found += extra
            taken += [(f.start_byte, f.end_byte) for f in extra]
    # A recovered function never overlaps one the parser found itself (nor another one).
    kept: list[FoundFunction] = []
    for f in sorted(found, key=lambda f: (f.recovered, f.start_byte)):
        if not any(f.start_byte < k.end_byte and k.start_byte < f.end_byte for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start_byte)
