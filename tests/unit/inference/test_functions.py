"""tree-sitter function discovery for `streamguard predict`: real parses of real code."""

from __future__ import annotations

from streamguard.inference.functions import find_functions, language_of

C_FILE = """\
#include <string.h>
#define COPY(dst, src) strcpy(dst, src)
#define EXPORT __attribute__((visibility("default")))

static int helper(int x)
{
    return x * 2;
}

EXPORT int exported(const char *s) {
    char buf[16];
    COPY(buf, s);
    return (int)strlen(buf);
}

int *ptr_func(void) { static int v; return &v; }

int broken(int a {
    if (a > 0 {
        return a;
    }
    return 0;
}

void after_broken(char *p) {
    memcpy(p, "x", 1);
}

struct s { int a; };
int declared_only(int);
"""


def _found(text, lang="c"):
    return {f.name: f for f in find_functions(text, lang)}


def test_every_c_function_with_its_lines():
    found = _found(C_FILE)
    assert list(found) == ["helper", "exported", "ptr_func", "broken", "after_broken"]
    assert (found["helper"].start_line, found["helper"].end_line) == (5, 8)
    assert (found["exported"].start_line, found["exported"].end_line) == (10, 14)
    assert (found["ptr_func"].start_line, found["ptr_func"].end_line) == (16, 16)
    assert (found["broken"].start_line, found["broken"].end_line) == (18, 23)
    assert (found["after_broken"].start_line, found["after_broken"].end_line) == (25, 27)
    assert found["helper"].text.startswith("static int helper(int x)") and found["helper"].text.endswith("}")
    assert "COPY(buf, s);" in found["exported"].text
    # The broken signature swallows what follows in tree-sitter's tree; both come back.
    assert found["broken"].recovered and found["after_broken"].recovered
    assert not found["helper"].recovered and not found["exported"].recovered


def test_errors_inside_a_body_keep_the_definition():
    text = "int f(int a) {\n    a = ;\n    return a +* ;\n}\nint g(void) { return 1; }\n"
    found = _found(text)
    assert list(found) == ["f", "g"] and not found["f"].recovered


def test_macro_defined_functions_and_attributes():
    text = ("DEFINE_HANDLER(on_open)\n{\n  return 1;\n}\n"
            "static inline int __attribute__((unused)) quiet(void) { return 0; }\n")
    assert list(_found(text)) == ["on_open", "quiet"]


def test_cpp_methods_namespaces_templates_and_operators():
    text = ("namespace n {\nclass A {\n public:\n  int m(int x) { return x; }\n  ~A() {}\n};\n"
            "int A::q() const { return 1; }\ntemplate <typename T> T g(T t) { return t; }\n}\n"
            'extern "C" { int c(void) { return 0; } }\n'
            "bool operator==(const A& a, const A& b) { return true; }\n"
            "#ifdef X\nstatic void in_ifdef(void) {}\n#endif\n")
    found = _found(text, "cpp")
    assert list(found) == ["m", "~A", "A::q", "g", "c", "operator==", "in_ifdef"]
    assert (found["m"].start_line, found["A::q"].start_line, found["in_ifdef"].start_line) == (4, 7, 13)


def test_no_functions_and_non_ascii_offsets():
    assert find_functions("struct s { int a; };\nint decl(int);\n#define X 1\n") == []
    text = "/* caf\u00e9 \ufffd */\nint f(void) { return 0; /* \u00e9 */ }\n"
    (f,) = find_functions(text)
    assert f.text == "int f(void) { return 0; /* \u00e9 */ }" and f.start_line == 2


def test_language_by_extension():
    assert language_of("a/b.c") == "c" and language_of("x.H") == "c" and language_of("x.cc") == "cpp"
    assert language_of("x.hpp") == "cpp" and language_of("x.py") is None
