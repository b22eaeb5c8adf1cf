#!/usr/bin/env python
"""Train StreamGuard's shipped C tokenizer (``builtin:c-bpe``).

A byte-level BPE (the RoBERTa/GPT-2 scheme: every byte is representable, so there are
no unknown tokens) with vocabulary size 8192 and min_frequency 2, special tokens
``<s> <pad> </s> <unk> <mask>`` with ids 0..4 (RoBERTa order, so a RoBERTa config can use
it). Pre-tokenisation splits C source into identifiers (``data_len`` stays one piece),
numbers, runs of ASCII punctuation, runs of non-ASCII characters and whitespace (the GPT-2
scheme: an optional leading space joins the next piece) before the byte-level mapping.

Training corpus, in this order (deterministic: no shuffling, no sampling):
  * the ``func`` field of the first 40,000 records of the Juliet train file
    (gzip JSONL, public-domain NIST Juliet C functions);
  * 5,000 functions from the project's synthetic generator
    (``streamguard.data.synthetic.generate_samples(5000, seed=0)``).

Writes a single ``tokenizer.json`` file (compact JSON), by default
``src/streamguard/data/assets/c_bpe_tokenizer.json``, which ``load_tokenizer("builtin:c-bpe")``
loads. Run it once; the output ships with the package (package data).

Example:
    .venv/bin/python scripts/train_tokenizer.py --juliet /work/shared/data/juliet/train.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "streamguard" / "data" / "assets" / "c_bpe_tokenizer.json"
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0..4, RoBERTa order

sys.path.insert(0, str(ROOT / "src"))
# The pre-tokenisation pattern lives with the loader, which splits the same way in Python
# (see streamguard.data.tokens.SPLIT_PATTERN).
from streamguard.data.tokens import SPLIT_PATTERN  # noqa: E402


def iter_juliet(path: Path, limit: int) -> Iterator[str]:
    n = 0
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if n >= limit:
                break
            line = line.strip()
            if not line:
                continue
            func = json.loads(line).get("func")
            if isinstance(func, str) and func:
                n += 1
                yield func
    if n < limit:
        print(f"note: {path} has only {n} functions (asked for {limit})", file=sys.stderr)


def iter_synthetic(n: int, seed: int) -> Iterator[str]:
    from streamguard.data.synthetic import generate_samples

    for sample in generate_samples(n, seed=seed):
        yield sample["func"]


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # Offsets are not trimmed: the tokens' character spans tile the text exactly (a token
    # " int" covers the space too), which keeps offsets simple and lossless.
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0),
                                                      trim_offsets=False, add_prefix_space=False)
    return tok


def train(texts: list[str], vocab_size: int, min_frequency: int):
    from tokenizers import pre_tokenizers, trainers

    tok = build_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return tok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="Train StreamGuard's shipped C tokenizer (builtin:c-bpe): a byte-level BPE trained "
        "deterministically on Juliet C functions plus synthetic functions, written as one tokenizer.json file.",
        epilog=__doc__.split("\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--juliet", type=Path, default=Path("/work/shared/data/juliet/train.jsonl.gz"),
                   help="Juliet train file, gzip JSONL with a `func` field (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output tokenizer.json (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=8192, help="vocabulary size incl. special tokens (default: %(default)s)")
    p.add_argument("--min-frequency", type=int, default=2, help="minimum pair frequency for a merge (default: %(default)s)")
    p.add_argument("--juliet-limit", type=int, default=40_000, help="first N Juliet functions (default: %(default)s)")
    p.add_argument("--synthetic", type=int, default=5_000, help="number of synthetic functions (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="synthetic generator seed (default: %(default)s)")
    args = p.parse_args(argv)

    if not args.juliet.is_file():
        p.error(f"Juliet file not found: {args.juliet} (pass --juliet PATH)")
    texts = list(iter_juliet(args.juliet, args.juliet_limit))
    texts += list(iter_synthetic(args.synthetic, args.seed))
    tok = train(texts, args.vocab_size, args.min_frequency)
    if tok.get_vocab_size() != args.vocab_size:
        print(f"note: vocabulary has {tok.get_vocab_size()} entries (asked for {args.vocab_size}): "
              "the corpus has too few frequent pairs", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(args.out), pretty=False)
    data = args.out.read_bytes()
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB, vocab {tok.get_vocab_size()}, "
          f"{len(texts)} training functions, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
