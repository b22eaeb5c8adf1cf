"""The compiled parts of StreamGuard, both in the data path: streamguard.data._treewalk
(tree-sitter parse, breadth-first tree arrays and the CFG/DFG analysis; see
src/streamguard/data/_treewalk.c) and streamguard.data._pieces (the builtin tokenizer's
pre-tokenisation of ASCII text). Everything else about the package is in pyproject.toml.
Building them needs a C compiler (gcc or clang) and the Python headers; the tree-sitter
runtime _treewalk links is vendored in third_party/tree-sitter."""

from setuptools import Extension, setup

TS = "third_party/tree-sitter/lib"

setup(
    ext_modules=[
        Extension(
            "streamguard.data._treewalk",
            sources=["src/streamguard/data/_treewalk.c", f"{TS}/src/lib.c"],
            include_dirs=[f"{TS}/include", f"{TS}/src"],
            define_macros=[("_DEFAULT_SOURCE", None), ("TREE_SITTER_HIDE_SYMBOLS", None)],
            extra_compile_args=["-std=c11", "-fvisibility=hidden", "-Wno-cast-function-type"],
        ),
        Extension("streamguard.data._pieces", sources=["src/streamguard/data/_pieces.c"],
                  extra_compile_args=["-std=c11", "-fvisibility=hidden"]),
    ],
)
