"""Token windows for the transformer and hybrid tracks.

Every function is tokenised once, at preparation time, with a *fast* (Rust-backed)
Hugging Face tokenizer, and one window of at most ``max_len`` tokens is stored with its
ids and offsets.

Tokenizers
----------
``load_tokenizer(name)`` accepts

* ``builtin:c-bpe`` (:data:`BUILTIN_TOKENIZER`): the shipped byte-level BPE, vocabulary
  8192, special tokens ``<s> <pad> </s> <unk> <mask>`` = ids 0..4 (RoBERTa layout), trained
  on Juliet + synthetic C functions by ``scripts/train_tokenizer.py``;
* a local ``tokenizer.json`` file, or a local directory (``save_pretrained`` output, or any
  directory with a ``tokenizer.json``), loaded through ``transformers.AutoTokenizer``;
* a Hugging Face hub id (``microsoft/codebert-base``), loaded through
  ``transformers.AutoTokenizer`` as well. The machines this runs on are usually offline:
  download the tokenizer elsewhere and pass its directory instead.

The tokenizer is validated when it is loaded (:func:`validate_tokenizer`): it must be fast
and report offsets. Whatever its origin, it is wrapped in a :class:`TokenizerHandle`, whose
``encode`` returns ids and offsets without special tokens.

Speed: for the builtin tokenizer (or a copy of it), ``encode`` splits the text into its
pre-tokenisation pieces in Python (:data:`SPLIT_PATTERN`, the same split as the Rust
pipeline) and caches the Rust BPE encoding of each distinct piece; C code repeats its pieces
so much that this is ~3x faster than the Rust pipeline's per-character bookkeeping, with
identical ids and offsets (tested on Devign and Juliet). A piece's cache entry holds its ids
and token lengths as raw C-int bytes, so :func:`encode_window` (the preparation path) builds
a function's ids and offsets with two ``bytes.join`` calls and NumPy, without a Python object
per token. Other tokenizers use the plain Rust call.

Offsets
-------
Offsets are **character** offsets into the Python ``str`` (what the tokenizer reports),
``text[s:e]`` being the token's text. The builtin tokenizer does not trim offsets, so its
tokens' spans tile the text exactly (a token ``" int"`` covers the space too); a byte that
is part of a multi-byte character shares that character's span with its neighbours.
The graph side of the pipeline keeps *UTF-8 byte* spans of AST nodes (of
``text.encode("utf-8", errors="replace")``); :func:`char_to_byte_offsets` converts between
the two (identical for ASCII text).

Windows
-------
Functions longer than the window are trimmed by :func:`choose_window`, which looks for
calls of risky APIs (:data:`RISKY_APIS`, and printf-family calls whose format argument is
not a string literal, :data:`FORMAT_APIS`) and keeps the densest cluster of them, with
context on both sides; without any, it keeps the head of the function.
"""

from __future__ import annotations

import bisect
import functools
import importlib.resources
import json
import os
import re
from array import array
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from streamguard.data._pieces import split_ascii
from streamguard.errors import DataError

__all__ = [
    "BUILTIN_TOKENIZER", "RISKY_APIS", "FORMAT_APIS", "SPLIT_PATTERN", "TokenizerHandle", "load_tokenizer",
    "validate_tokenizer", "encode_batch", "risky_spans", "choose_window", "tokenize_function", "encode_window",
    "TokenWindow",
    "char_to_byte_offsets", "tokenizer_fingerprint",
]

BUILTIN_TOKENIZER = "builtin:c-bpe"
_BUILTIN_ASSET = "c_bpe_tokenizer.json"

# --------------------------------------------------------------------------- risky APIs

# Weight of an occurrence when choosing the window: classic overflow/injection sinks count
# most, bounded copies less, allocation/free patterns least (they are everywhere).
_TIER_HIGH = (
    "strcpy", "strcat", "wcscpy", "wcscat", "sprintf", "vsprintf", "swprintf", "vswprintf",
    "gets", "scanf", "sscanf", "fscanf", "vscanf", "vsscanf", "vfscanf",
    "alloca", "realpath", "getwd",
    "system", "popen", "execl", "execlp", "execle", "execv", "execvp", "execve",
)
_TIER_MID = ("memcpy", "memmove", "wmemcpy", "wmemmove", "strncpy", "strncat", "wcsncpy", "wcsncat")
_TIER_LOW = ("malloc", "calloc", "realloc", "free")

RISKY_APIS: tuple[str, ...] = _TIER_HIGH + _TIER_MID + _TIER_LOW
"""APIs whose every call is a risky occurrence: ``name`` followed by optional whitespace and
``(``, with a word boundary before. ``strcpy_s(``, ``my_strcpy_wrapper(`` or ``__builtin_memcpy(``
do NOT match ``strcpy``/``memcpy`` (different identifiers)."""

FORMAT_APIS: tuple[str, ...] = ("printf", "vprintf", "wprintf", "vwprintf",
                                "fprintf", "vfprintf", "fwprintf", "vfwprintf", "dprintf", "syslog")
"""Format-string pattern: a call of one of these whose format argument (the first for the
printf/vprintf/wprintf family, the second for the others) is not a string literal."""

_WEIGHT = {**{a: 3 for a in _TIER_HIGH}, **{a: 2 for a in _TIER_MID}, **{a: 1 for a in _TIER_LOW},
           **{a: 3 for a in FORMAT_APIS}}


def _alternation(names) -> str:
    return "|".join(re.escape(n) for n in sorted(names, key=lambda s: (-len(s), s)))


_FMT_FIRST = ("printf", "vprintf", "wprintf", "vwprintf")
_FMT_SECOND = tuple(a for a in FORMAT_APIS if a not in _FMT_FIRST)
# One alternation, so that matches are non-overlapping and come in text order. The leading
# lookahead on the possible first letters lets the scan skip most positions (2x faster).
_FIRST_LETTERS = "".join(sorted({a[0] for a in RISKY_APIS + FORMAT_APIS}))
_RISKY_RE = re.compile(
    rf"(?=[{_FIRST_LETTERS}])\b(?:"
    rf"(?P<call>{_alternation(RISKY_APIS)})\s*\("
    rf"|(?P<fmt1>{_alternation(_FMT_FIRST)})\s*\(\s*+(?!L?\"|\))"          # possessive: no
    rf"|(?P<fmt2>{_alternation(_FMT_SECOND)})\s*\([^,;()\"]*,\s*+(?!L?\")"   # backtracking past spaces
    r")"
)


# A risky call's name is always a whole pre-tokenisation piece (with or without its leading
# space), so a text whose pieces include none of these has no risky span (a cheap prefilter).
_RISKY_PIECES = frozenset(chain.from_iterable((a, " " + a) for a in RISKY_APIS + FORMAT_APIS))


def risky_spans(text: str) -> list[tuple[int, int, str]]:
    """``(char_start, char_end, api)`` of every risky call in ``text``, in text order,
    non-overlapping; the span runs from the API name to its opening parenthesis (for the
    format-string pattern, to the start of the format argument). Regex-based: calls inside
    comments or string literals count too; it is a cheap heuristic, not a parser."""
    out = []
    for m in _RISKY_RE.finditer(text):
        api = m.group("call") or m.group("fmt1") or m.group("fmt2")
        out.append((m.start(), m.end(), api))
    return out


# --------------------------------------------------------------------------- tokenizer

SPLIT_PATTERN = (
    r" ?(?:[A-Za-z_][A-Za-z0-9_]*"                                      # identifiers, keywords
    r"|[0-9][A-Za-z0-9_.]*"                                             # numbers: 0x1F, 1.5f, 10UL
    r"|[^\x00-\x7f]+"                                                   # runs of non-ASCII characters
    r"|[\x00-\x08\x0e-\x1f\x21-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f]+)"   # punctuation, controls
    r"|[ \t\n\r\x0b\x0c]+(?![^ \t\n\r\x0b\x0c])"                        # whitespace (GPT-2 style:
    r"|[ \t\n\r\x0b\x0c]+"                                             #  a last space joins the next piece)
)
"""Pre-tokenisation of the builtin tokenizer (``Split(Regex(SPLIT_PATTERN), "isolated")`` then
``ByteLevel(use_regex=False)``). Only explicit character classes, so Python's ``re`` and the
tokenizers' Oniguruma engine split identically, and the pieces tile the text."""

_SPLIT_RE = re.compile(SPLIT_PATTERN)


def _byte_level_ascii() -> dict[int, str]:
    """The GPT-2 byte-to-character table (tokenizers' ByteLevel), restricted to ASCII."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return {b: c for b, c in table.items() if b < 128}


_BYTE_LEVEL_ASCII = _byte_level_ascii()

_PROBE = "int main(void) { char buf[16]; strcpy(buf, argv[1]); return 0; }"
_CLS_CANDIDATES = ("<s>", "[CLS]", "<cls>", "<|endoftext|>")
_SEP_CANDIDATES = ("</s>", "[SEP]", "<sep>", "<|endoftext|>")
_PAD_CANDIDATES = ("<pad>", "[PAD]", "<|pad|>")
_SURROGATES = re.compile("[\ud800-\udfff]")


def _sanitize(text: str) -> str:
    """Lone surrogates (from ``surrogateescape`` decoding) cannot cross into Rust; replace
    each by U+FFFD, one character for one, so character offsets do not move."""
    return _SURROGATES.sub("\ufffd", text)


class TokenizerHandle:
    """A validated fast tokenizer, whatever its origin (``tokenizers.Tokenizer`` or
    ``transformers.PreTrainedTokenizerFast``): it encodes through the Rust backend directly.

    Attributes: ``name``, ``vocab_size`` (incl. added/special tokens), ``cls_id``, ``sep_id``,
    ``pad_id``, ``backend`` (the ``tokenizers.Tokenizer``)."""

    is_fast = True
    # Distinct pieces cached per process (~0.5 kB each, so ~25 MB at most); the cache is
    # emptied when full. On Devign, 50k keeps ~95% of the speed of an unbounded cache.
    piece_cache_max = 50_000

    def __init__(self, backend: Any, name: str, *, cls_id: int, sep_id: int, pad_id: int,
                 vocab_size: int | None = None):
        self.backend = backend
        self.name = name
        self.cls_id = int(cls_id)
        self.sep_id = int(sep_id)
        self.pad_id = int(pad_id)
        self.vocab_size = int(vocab_size if vocab_size is not None
                              else backend.get_vocab_size(with_added_tokens=True))
        self._added = _piece_path_added_tokens(backend)
        self._pieces: dict[str, tuple] | None = {} if self._added is not None else None
        self._model = self._token_len = None
        if self._pieces is not None:
            self._init_piece_path()

    def _init_piece_path(self) -> None:
        self._model = self.backend.model
        vocab = self.backend.get_vocab(with_added_tokens=False)
        token_len = [0] * (max(vocab.values(), default=-1) + 1)
        for token, tid in vocab.items():
            token_len[tid] = len(token)  # a byte-level token: one character per byte
        self._token_len = token_len

    def __repr__(self) -> str:
        return (f"TokenizerHandle(name={self.name!r}, vocab_size={self.vocab_size}, cls_id={self.cls_id}, "
                f"sep_id={self.sep_id}, pad_id={self.pad_id})")

    def __getstate__(self):  # the piece cache and the model view are rebuilt, not shipped
        state = self.__dict__.copy()
        state["_pieces"] = {} if state["_pieces"] is not None else None
        state["_model"] = state["_token_len"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._pieces is not None:
            self._init_piece_path()

    def clear_cache(self) -> None:
        """Forget cached piece encodings (benchmarks measure cold caches with this)."""
        if self._pieces is not None:
            self._pieces.clear()

    @property
    def uses_piece_cache(self) -> bool:
        """True when ``encode`` splits in Python and caches the Rust encoding of each piece."""
        return self._pieces is not None

    def _encode_piece(self, piece: str) -> tuple:
        """Cache entry for one piece: (ids, per-token char lengths or None, offsets or None,
        length), ids and lengths as the bytes of C ``int`` arrays, so a text's entries are
        concatenated with one ``bytes.join`` each. ASCII pieces go straight to the BPE model (the byte-level
        mapping of ASCII is one character for one), others through the whole Rust pipeline."""
        ids = None
        if piece.isascii():
            ids = [t.id for t in self._model.tokenize(piece.translate(_BYTE_LEVEL_ASCII))]
            lens = list(map(self._token_len.__getitem__, ids))  # bytes = characters here
            offs = None
            if sum(lens) != len(piece):  # not a plain byte-level vocabulary after all
                ids = None
            else:
                lens = array("i", lens).tobytes()
        if ids is None:
            try:
                enc = self.backend.encode(piece, add_special_tokens=False)
            except Exception:
                if not _SURROGATES.search(piece):
                    raise
                enc = self.backend.encode(_sanitize(piece), add_special_tokens=False)
            ids, offs, lens = enc.ids, tuple(enc.offsets), None
        entry = (array("i", ids).tobytes(), lens, offs, len(piece))
        if len(self._pieces) >= self.piece_cache_max:
            self._pieces.clear()
        self._pieces[piece] = entry
        return entry

    def _piece_entries(self, text: str) -> tuple[list[str], list[tuple]]:
        """The text's pieces (SPLIT_PATTERN; in C for ASCII text) and their cache entries
        (piece path only)."""
        pieces = split_ascii(text) if text.isascii() else _SPLIT_RE.findall(text)
        cache = self._pieces
        entries = list(map(cache.get, pieces))
        k = -1
        for _ in range(entries.count(None)):  # visit only the misses (count/index scan at C speed)
            k = entries.index(None, k + 1)
            p = pieces[k]
            entries[k] = cache.get(p) or self._encode_piece(p)  # (a piece missing twice is encoded once)
        return pieces, entries

    def _fast_ascii(self, text: str) -> bool:
        """Whether ``text`` takes the piece path with tiling tokens (ASCII, no added token), so
        that ``encode_window`` can build its arrays from the cached pieces directly."""
        return self._pieces is not None and text.isascii() and not any(t in text for t in self._added)

    def encode(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """``(ids, offsets)`` without special tokens; offsets are character offsets into ``text``."""
        if self._pieces is None or any(t in text for t in self._added):
            try:
                enc = self.backend.encode(text, add_special_tokens=False)
            except Exception:
                if not _SURROGATES.search(text):
                    raise
                enc = self.backend.encode(_sanitize(text), add_special_tokens=False)
            return enc.ids, enc.offsets
        # Piece path: the same ids and offsets as the Rust pipeline (the tests check it on
        # real corpora). The pre-tokenizer splits `text` into pieces (SPLIT_PATTERN) that the
        # model then encodes independently, so each distinct piece's Rust encoding is cached
        # and the results are concatenated with shifted offsets. This skips the Rust
        # pipeline's per-character bookkeeping, which dominates for code (many short pieces).
        pieces, entries = self._piece_entries(text)
        ids = np.frombuffer(b"".join(map(itemgetter(0), entries)), dtype=np.intc).tolist()
        if text.isascii():  # every token covers its own characters: offsets from lengths, at C speed
            ends = np.cumsum(np.frombuffer(b"".join(map(itemgetter(1), entries)), dtype=np.intc)).tolist()
            return ids, list(zip(chain((0,), ends), ends))
        offsets: list[tuple[int, int]] = []
        pos = 0
        for _, plens, poff, length in entries:
            if poff is None:  # an ASCII piece: its tokens tile it
                for n in memoryview(plens).cast("i"):
                    offsets.append((pos, pos + n))
                    pos += n
            else:
                offsets += [(pos + a, pos + b) for a, b in poff]
                pos += length
        return ids, offsets

    def encode_batch(self, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Like ``encode`` for many texts, with the Rust batch encoder (parallel over
        ``RAYON_NUM_THREADS`` threads unless ``TOKENIZERS_PARALLELISM=false``)."""
        texts = list(texts)
        try:
            encs = self.backend.encode_batch(texts, add_special_tokens=False)
        except Exception:
            if not any(_SURROGATES.search(t) for t in texts):
                raise
            encs = self.backend.encode_batch([_sanitize(t) for t in texts], add_special_tokens=False)
        return [(e.ids, e.offsets) for e in encs]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)


def _piece_path_added_tokens(backend: Any) -> tuple[str, ...] | None:
    """The added tokens' strings when ``backend`` pre-tokenises exactly with SPLIT_PATTERN
    (the builtin tokenizer, or a copy of it) and nothing else could make a piece's encoding
    depend on its context; None otherwise (then ``encode`` is the plain Rust call)."""
    try:
        state = json.loads(backend.to_str())
    except Exception:
        return None
    pre = state.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2:
        return None
    split, byte_level = steps
    post = state.get("post_processor")
    model = state.get("model") or {}
    ok = (state.get("normalizer") is None
          and split.get("type") == "Split" and split.get("pattern") == {"Regex": SPLIT_PATTERN}
          and split.get("behavior") == "Isolated" and not split.get("invert")
          and byte_level.get("type") == "ByteLevel" and byte_level.get("use_regex") is False
          and not byte_level.get("add_prefix_space")
          and model.get("type") == "BPE" and model.get("dropout") in (None, 0, 0.0)
          and (post is None or post.get("type") == "TemplateProcessing"
               or (post.get("type") in ("RobertaProcessing", "ByteLevel") and post.get("trim_offsets") is False)))
    if not ok:
        return None
    return tuple(t["content"] for t in state.get("added_tokens") or [] if t.get("content"))


def validate_tokenizer(obj: Any, name: str):
    """Check that ``obj`` (a ``tokenizers.Tokenizer`` or a ``transformers`` tokenizer) is fast
    and reports usable character offsets; return its Rust backend (``tokenizers.Tokenizer``).
    Raises DataError with a one-line message otherwise."""
    advice = f"pass a directory or file with a tokenizer.json (a fast tokenizer), or use {BUILTIN_TOKENIZER}"
    is_fast = getattr(obj, "is_fast", None)
    if is_fast is None and hasattr(obj, "encode") and hasattr(obj, "get_vocab_size"):
        backend = obj  # a tokenizers.Tokenizer: Rust by construction
    elif is_fast is not True:
        raise DataError(f'tokenizer "{name}" is not a fast tokenizer ({type(obj).__name__}, is_fast={is_fast}): '
                        f"a fast (Rust, `tokenizers`-backed) tokenizer is required for offsets; {advice}")
    else:
        backend = getattr(obj, "backend_tokenizer", None)
        if backend is None or not hasattr(backend, "encode"):
            raise DataError(f'tokenizer "{name}" ({type(obj).__name__}) has no Rust backend: a fast (Rust) '
                            f"tokenizer with offsets is required; {advice}")
    # Saved tokenizers may carry padding/truncation (e.g. sentence-transformers pads to 128):
    # windows are chosen and padded by us, so both are switched off before probing.
    if getattr(backend, "truncation", None) is not None:
        backend.no_truncation()
    if getattr(backend, "padding", None) is not None:
        backend.no_padding()
    try:
        enc = backend.encode(_PROBE, add_special_tokens=False)
        ids, offsets = list(enc.ids), list(enc.offsets)
    except Exception as exc:
        raise DataError(f'tokenizer "{name}" cannot encode with offsets ({type(exc).__name__}: '
                        f'{str(exc).splitlines()[0] if str(exc) else ""}): a fast (Rust) tokenizer with '
                        f"offsets is required; {advice}") from exc
    ok = (len(ids) > 0 and len(offsets) == len(ids)
          and all(len(o) == 2 and 0 <= o[0] <= o[1] <= len(_PROBE) for o in offsets)
          and any(o[1] > o[0] for o in offsets)
          and all(a[0] <= b[0] for a, b in zip(offsets, offsets[1:])))
    if not ok:
        raise DataError(f'tokenizer "{name}" does not report character offsets: a fast (Rust) tokenizer '
                        f"with offsets support is required; {advice}")
    return backend


def _special_id(obj: Any, backend: Any, attrs: tuple[str, ...], candidates: tuple[str, ...]) -> int | None:
    for attr in attrs:
        value = getattr(obj, attr, None)
        if isinstance(value, int) and value >= 0:
            return value
    for token in candidates:
        tid = backend.token_to_id(token)
        if tid is not None:
            return tid
    return None


def _make_handle(obj: Any, name: str) -> TokenizerHandle:
    backend = validate_tokenizer(obj, name)
    if backend.truncation is not None:
        backend.no_truncation()
    if backend.padding is not None:
        backend.no_padding()
    cls_id = _special_id(obj, backend, ("cls_token_id", "bos_token_id"), _CLS_CANDIDATES)
    sep_id = _special_id(obj, backend, ("sep_token_id", "eos_token_id"), _SEP_CANDIDATES)
    if cls_id is None or sep_id is None:
        raise DataError(f'tokenizer "{name}" has no CLS/SEP (or BOS/EOS) token to frame a window: '
                        f"use a tokenizer that defines them, or use {BUILTIN_TOKENIZER}")
    pad_id = _special_id(obj, backend, ("pad_token_id",), _PAD_CANDIDATES)
    if pad_id is None:
        pad_id = sep_id
    return TokenizerHandle(backend, name, cls_id=cls_id, sep_id=sep_id, pad_id=pad_id)


def _truthy_env(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


def _hub_unreachable() -> bool:
    """Cheap check that the hub cannot be reached (no proxy configured and its host does not
    resolve), to fail at once instead of after transformers' retries (~45 s)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                       "ALL_PROXY", "all_proxy")):
        return False
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return True
    return False


def _load_transformers(name: str, source: str, *, local: bool):
    offline_msg = (f'tokenizer "{name}" is not available offline: download it with '
                   f"`hf download {name} --local-dir DIR` and pass the local directory as "
                   f"data.tokenizer, or use {BUILTIN_TOKENIZER}")
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        if local and (Path(source) / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            return Tokenizer.from_file(str(Path(source) / "tokenizer.json"))
        raise DataError(f'tokenizer "{name}" needs the `transformers` package: pip install '
                        f'"transformers>=4.45,<6", or use {BUILTIN_TOKENIZER}') from exc
    if local:
        try:
            return AutoTokenizer.from_pretrained(source, use_fast=True, local_files_only=True)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataError(f'tokenizer directory "{name}" cannot be loaded ({type(exc).__name__}: {first}): '
                            f"it should hold a tokenizer.json (save_pretrained output), or use "
                            f"{BUILTIN_TOKENIZER}") from exc
    # Hub id: the cache first (never touches the network), then the hub unless offline.
    try:
        return AutoTokenizer.from_pretrained(name, use_fast=True, local_files_only=True)
    except Exception as exc:
        cache_exc = exc
    if _truthy_env("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") or _hub_unreachable():
        raise DataError(offline_msg) from cache_exc
    try:
        return AutoTokenizer.from_pretrained(name, use_fast=True)
    except OSError as exc:  # includes connection errors and missing repos/files
        raise DataError(offline_msg) from exc
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f'tokenizer "{name}" cannot be loaded ({type(exc).__name__}: {first}): '
                        f"pass a local directory as data.tokenizer, or use {BUILTIN_TOKENIZER}") from exc


def _looks_like_path(name: str) -> bool:
    return (name.startswith(("/", "./", "../", "~", "\\")) or name.endswith(".json")
            or os.path.isabs(name) or name.count("/") > 1)


@functools.lru_cache(maxsize=None)
def load_tokenizer(name: str) -> TokenizerHandle:
    """A validated fast tokenizer (see the module docstring); cached per name, so a worker
    process loads it once. Raises DataError with a one-line, actionable message."""
    if not isinstance(name, str) or not name.strip():
        raise DataError(f"tokenizer name must be a non-empty string, got {name!r}: use {BUILTIN_TOKENIZER}")
    name = name.strip()
    if name.startswith(("s3://", "pkg:")) or name in _aliases():
        from streamguard.errors import StreamGuardError
        from streamguard.pretrained import resolve

        try:
            target = resolve(name)  # an alias -> its hub id; s3:// -> a verified local copy
        except StreamGuardError as exc:
            raise DataError(f'tokenizer "{name}": {exc}') from None
        return _make_handle(_load_transformers(name if Path(target).is_dir() else target, target,
                                               local=Path(target).is_dir()), name)
    if name.startswith("builtin:"):
        if name != BUILTIN_TOKENIZER:
            raise DataError(f'unknown builtin tokenizer "{name}": the builtin one is {BUILTIN_TOKENIZER}')
        from tokenizers import Tokenizer

        asset = importlib.resources.files("streamguard.data").joinpath("assets", _BUILTIN_ASSET)
        try:
            obj = Tokenizer.from_str(asset.read_text(encoding="utf-8"))
        except (OSError, FileNotFoundError) as exc:
            raise DataError(f"the builtin tokenizer file assets/{_BUILTIN_ASSET} is missing from the "
                            f"streamguard package: reinstall it, or regenerate it with "
                            f"scripts/train_tokenizer.py") from exc
        return _make_handle(obj, name)

    path = Path(name).expanduser()
    if path.is_file():
        from tokenizers import Tokenizer

        try:
            obj = Tokenizer.from_file(str(path))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataError(f'tokenizer file "{name}" cannot be read as a tokenizer.json ({first}): pass a '
                            f"tokenizer.json file or directory, or use {BUILTIN_TOKENIZER}") from exc
        return _make_handle(obj, name)
    if path.is_dir():
        return _make_handle(_load_transformers(name, str(path), local=True), name)
    if _looks_like_path(name):
        raise DataError(f'tokenizer path "{name}" does not exist: pass an existing tokenizer.json file or '
                        f"directory, or use {BUILTIN_TOKENIZER}")
    return _make_handle(_load_transformers(name, name, local=False), name)


def _aliases() -> dict[str, str]:
    from streamguard.pretrained import BACKBONE_ALIASES

    return BACKBONE_ALIASES


def tokenizer_fingerprint(tok: TokenizerHandle) -> str:
    """sha256 of the tokenizer's full serialised state (vocabulary, merges, pre-tokenizer,
    special tokens): equal fingerprints make identical token ids, whatever the name."""
    import hashlib

    state = json.loads(tok.backend.to_str())
    for key in ("truncation", "padding"):  # runtime settings, not the tokenizer itself
        state.pop(key, None)
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def encode_batch(tok: TokenizerHandle, texts: Sequence[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
    """``[(ids, offsets), ...]`` for ``texts``, same results as ``tok.encode`` one by one, with
    the Rust batch encoder (parallel)."""
    return tok.encode_batch(texts)


# --------------------------------------------------------------------------- windows


def choose_window(ids: Sequence[int], offsets: Sequence[Sequence[int]], text: str,
                  max_len: int = 512) -> tuple[int, int, str]:
    """``(start, end, reason)``: the token slice ``ids[start:end]`` to keep, ``end - start <= max_len``
    (special tokens not counted: callers reserve room for them).

    * The whole sequence fits: ``(0, n, "full")``.
    * Else, with risky calls in ``text`` (:func:`risky_spans`; ``offsets`` map them to tokens):
      among the windows of ``max_len`` tokens, the one whose fully contained risky occurrences
      weigh most (sinks such as strcpy/system/exec*/format strings 3, bounded copies such as
      memcpy/strncpy 2, malloc/calloc/realloc/free 1; ties -> the earliest). So the window
      always fully contains at least one occurrence (the first of its cluster), and all of them
      when they fit in one window. The cluster is centred in the window (context on both
      sides), the window shifted to stay inside the sequence. Reason ``"risky:<api>"``: the
      heaviest API in the window, the earliest among equals.
    * Else head truncation: ``(0, max_len, "head")``.
    """
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    n = len(ids)
    if n <= max_len:
        return 0, n, "full"
    spans = risky_spans(text) if text else []
    if spans:
        window = _risky_window(n, [int(o[0]) for o in offsets], [int(o[1]) for o in offsets], spans, max_len)
        if window is not None:
            return window
    return 0, max_len, "head"


def _risky_window(n: int, starts: list[int], ends: list[int], spans, max_len: int):
    occ = []  # (tok_lo, tok_hi, weight, api), in text order
    for cs, ce, api in spans:
        lo = min(bisect.bisect_right(ends, cs), n - 1)  # first token ending after cs
        hi = min(max(bisect.bisect_left(starts, ce), lo + 1), n)  # first token starting at/after ce
        if hi - lo <= max_len:
            occ.append((lo, hi, _WEIGHT.get(api, 1), api))
    if not occ:
        return None
    occ.sort(key=lambda o: (o[0], o[1]))
    # Two pointers: for each leftmost occurrence i, the occurrences i..j-1 end within
    # max_len tokens of its start (token spans of non-overlapping matches are ordered).
    best = None  # (score, i, j)
    j = 0
    score = 0
    for i in range(len(occ)):
        limit = occ[i][0] + max_len
        while j < len(occ) and occ[j][1] <= limit:
            score += occ[j][2]
            j += 1
        if best is None or score > best[0]:
            best = (score, i, j)
        score -= occ[i][2]
    _, i, j = best
    cluster = occ[i:j]
    a = cluster[0][0]
    b = max(o[1] for o in cluster)
    free = max_len - (b - a)
    start = min(max(a - free // 2, 0), n - max_len)
    top = max(o[2] for o in cluster)
    api = next(o[3] for o in cluster if o[2] == top)
    return start, start + max_len, f"risky:{api}"


class TokenWindow(NamedTuple):
    """One function's stored window (what the shards hold), as int32 arrays."""
    input_ids: np.ndarray     # CLS + window + SEP
    offset_start: np.ndarray  # character offsets into the text; CLS/SEP get 0
    offset_end: np.ndarray
    n_tokens_full: int        # tokens of the whole function, special tokens not counted
    window_start: int         # index of the window's first token in the full sequence
    window_reason: str        # "full", "head" or "risky:<api>"


def encode_window(tok: TokenizerHandle, text: str, max_len: int = 512) -> TokenWindow:
    """Tokenise one function and keep one window (:func:`choose_window` with ``max_len - 2``),
    framed by CLS and SEP. The preparation path: arrays, built without per-token Python
    objects on the piece path. :func:`tokenize_function` is the same as lists."""
    if max_len < 3:
        raise ValueError(f"max_len must be >= 3 (CLS + SEP + at least one token), got {max_len}")
    budget = max_len - 2
    if tok._fast_ascii(text):
        ids, starts, ends, n, start, reason = _window_ascii(tok, text, budget)
    else:
        ids, offsets = tok.encode(text)
        n = len(ids)
        start, end, reason = choose_window(ids, offsets, text, budget)
        ids = np.asarray(ids[start:end], dtype=np.int32)
        pairs = np.asarray(offsets[start:end], dtype=np.int32).reshape(-1, 2)
        starts, ends = pairs[:, 0], pairs[:, 1]
    return TokenWindow(_framed(ids, tok.cls_id, tok.sep_id), _framed(starts, 0, 0), _framed(ends, 0, 0),
                       n, start, reason)


def _framed(values: np.ndarray, first: int, last: int) -> np.ndarray:
    out = np.empty(len(values) + 2, dtype=np.int32)
    out[0], out[-1] = first, last
    out[1:-1] = values
    return out


def tokenize_function(tok: TokenizerHandle, text: str, max_len: int = 512) -> dict:
    """Tokenise one function and keep one window (:func:`choose_window` with ``max_len - 2``).

    Returns ``{'input_ids', 'offsets', 'n_tokens_full', 'window_start', 'window_reason'}``:
    ``input_ids`` = CLS + window + SEP (at most ``max_len`` ids), ``offsets`` the matching
    character offsets into ``text`` (CLS/SEP get ``(0, 0)``), ``n_tokens_full`` the token
    count of the whole function (no special tokens), ``window_start`` the index of the
    window's first token in that full sequence."""
    w = encode_window(tok, text, max_len)
    return {
        "input_ids": w.input_ids.tolist(),
        "offsets": list(zip(w.offset_start.tolist(), w.offset_end.tolist())),
        "n_tokens_full": w.n_tokens_full,
        "window_start": w.window_start,
        "window_reason": w.window_reason,
    }


def _window_ascii(tok: TokenizerHandle, text: str, budget: int):
    """The window of ASCII text on the piece path: the cached pieces' ids and token lengths
    are concatenated as bytes, so the cost per token is C-level. Same result as encode +
    choose_window (tests check it)."""
    pieces, entries = tok._piece_entries(text)
    ids = np.frombuffer(b"".join(map(itemgetter(0), entries)), dtype=np.intc)
    lens = np.frombuffer(b"".join(map(itemgetter(1), entries)), dtype=np.intc)
    n = len(ids)
    start, end, reason = 0, n, "full"
    if n > budget:
        start, end, reason = 0, budget, "head"
        if not _RISKY_PIECES.isdisjoint(pieces):
            spans = risky_spans(text)
            if spans:
                all_ends = np.cumsum(lens)
                window = _risky_window(n, (all_ends - lens).tolist(), all_ends.tolist(), spans, budget)
                if window is not None:
                    start, end, reason = window
    ends = np.cumsum(lens[:end], dtype=np.int32)[start:]
    return ids[start:end], ends - lens[start:end], ends, n, start, reason


def char_to_byte_offsets(text: str, offsets: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Convert character offsets into ``text`` to offsets into ``text.encode("utf-8",
    errors="replace")`` (how the graph side encodes it: a lone surrogate is one byte, ``?``).
    Identity for ASCII text; otherwise one vectorised lookup in the cumulative byte widths."""
    if text.isascii():
        return [(int(s), int(e)) for s, e in offsets]
    if len(offsets) == 0:
        return []
    cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    width = (1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000)).astype(np.int64)
    width[(cp >= 0xD800) & (cp <= 0xDFFF)] = 1
    cum = np.zeros(len(cp) + 1, dtype=np.int64)
    np.cumsum(width, out=cum[1:])
    idx = np.clip(np.asarray(offsets, dtype=np.int64).reshape(-1, 2), 0, len(cp))
    return [tuple(pair) for pair in cum[idx].tolist()]
