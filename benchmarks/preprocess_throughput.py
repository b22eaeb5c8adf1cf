"""Preprocessing throughput on real functions; prints one JSON object.

    python benchmarks/preprocess_throughput.py [--source devign:PATH] [--limit N]

- bare: tree-sitter parse + the AST graph (node types, hashed leaf tokens, AST edges) with the
  Python binding: the foundation's minimal path, with no CFG/DFG/NCS edges and no tokens.
- full: what `streamguard data prepare` does per function: AST + NCS + CFG + DFG graph (parsed,
  walked and analysed in C by streamguard.data._treewalk), tier check, and the tokenizer
  window, into an Arrow table.
- parse only: `Parser.parse` alone, no walk at all (a floor nothing can go below;
  `full_over_parse_only_time_ratio` is reported for that comparison, it has no goal).
- 1 and 2 workers run the real process pool of `prepare` (fresh worker processes, forked
  from this one after its piece cache is cleared, so cold caches) on the same functions.
- The tokenizer's per-process piece cache is cleared before every "full" measurement, so
  repeats do not profit from having seen the same functions.
- bare and full alternate within each repeat, and the ratio is min(full) / min(bare);
  `full_over_bare_per_repeat` shows how much a shared machine's speed moved.
Goals: full_over_bare_time_ratio <= 2.0, speedup_2_over_1 >= 1.8.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import deque
from itertools import repeat

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one core per worker, no hidden threads

from streamguard.data.parse import _parser, num_node_types, token_bucket  # noqa: E402
from streamguard.data.prepare import CHUNK, _run_pool  # noqa: E402
from streamguard.data.process import ProcessSettings, process_chunk  # noqa: E402
from streamguard.data.sources import read_source  # noqa: E402
from streamguard.data.tokens import load_tokenizer  # noqa: E402


def bare_ast_graph(code: bytes, max_nodes: int = 4000, buckets: int = 4096) -> int:
    """The minimal path: parse, then one BFS walk emitting node types, leaf tokens, AST
    edges (written as tightly as parse_function's walk, so the ratio is not flattered)."""
    root = _parser("c").parse(code).root_node
    error_id = num_node_types("c") - 1  # C block: offset 0 in the shared vocabulary
    types, tokens, parents = [], [], []  # AST edge i: parents[i] -> node i + 1 (as parse_function)
    add_type, add_token, add_parent = types.append, tokens.append, parents.append
    queue = deque([(root, -1)])
    pop, push = queue.popleft, queue.extend
    idx = -1
    while queue:
        node, parent = pop()
        idx += 1
        if idx >= max_nodes:
            break
        kind = node.kind_id
        add_type(kind if kind < error_id else error_id)
        if node.child_count == 0:
            start, end = node.byte_range
            add_token(token_bucket(code[start:end], buckets))
        else:
            add_token(0)
            push(zip(node.children, repeat(idx)))
        if parent >= 0:
            add_parent(parent)
    return len(types)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="devign:../shared/data/devign/train.jsonl.gz")
    ap.add_argument("--limit", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3, help="best of N for each measurement")
    args = ap.parse_args()

    records = read_source(args.source, limit=args.limit).records
    for r in records:
        r.setdefault("lang", "c")
    codes = [r["func"].encode("utf-8", errors="replace") for r in records]
    settings = ProcessSettings()
    process_chunk(records[:CHUNK], settings)  # warm up: grammar, tokenizer

    tokenizer = load_tokenizer(settings.tokenizer)

    def full_cold():
        tokenizer.clear_cache()
        process_chunk(records, settings)

    # Alternated, so that a machine whose speed drifts (a shared VM) affects both alike.
    parser = _parser("c")
    triples = [(timed(lambda: [parser.parse(c) for c in codes]), timed(lambda: [bare_ast_graph(c) for c in codes]),
                timed(full_cold)) for _ in range(args.repeats)]
    pairs = [(b, f) for _, b, f in triples]
    parse_only = min(p for p, _, _ in triples)
    bare, full = min(b for b, _ in pairs), min(f for _, f in pairs)
    chunks = [records[i:i + CHUNK] for i in range(0, len(records), CHUNK)]
    def pool_cold(workers):
        tokenizer.clear_cache()  # the workers are forked from this process: they start from its cache
        return timed(lambda: list(_run_pool(chunks, settings, workers, progress=False, inline_single=False)))

    pool = {w: min(pool_cold(w) for _ in range(args.repeats)) for w in (1, 2)}
    n = len(records)
    print(json.dumps({
        "source": args.source, "functions": n, "cpu_count": os.cpu_count(),
        "parse_only_functions_per_s": round(n / parse_only, 1),
        "bare_parse_functions_per_s": round(n / bare, 1),
        "full_functions_per_s_inline": round(n / full, 1),
        "full_functions_per_s_1_worker": round(n / pool[1], 1),
        "full_functions_per_s_2_workers": round(n / pool[2], 1),
        "full_over_bare_time_ratio": round(full / bare, 3),
        "full_over_bare_per_repeat": [round(f / b, 3) for b, f in pairs],
        "full_over_parse_only_time_ratio": round(full / parse_only, 3),
        "speedup_2_over_1": round(pool[1] / pool[2], 3),
        "goals": {"full_over_bare_time_ratio": "<= 2.0", "speedup_2_over_1": ">= 1.8"},
    }, indent=2))


if __name__ == "__main__":
    main()
