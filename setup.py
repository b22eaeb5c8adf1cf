"""The one compiled part of StreamGuard: streamguard.data._treewalk (tree-sitter parse and
breadth-first tree arrays in C; see src/streamguard/data/_treewalk.c). Everything else about
the package is in pyproject.toml. Building it needs a C compiler (gcc or clang) and the
Python headers; the tree-sitter runtime it links is vendored in third_party/tree-sitter."""

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
        )
    ],
)
