"""Token windows: the shipped tokenizer, loading/validation errors, the risky-API trimmer."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamguard.data._pieces import split_ascii
from streamguard.data.synthetic import generate_samples
from streamguard.data.tokens import (
    _SPLIT_RE,
    BUILTIN_TOKENIZER,
    FORMAT_APIS,
    RISKY_APIS,
    char_to_byte_offsets,
    choose_window,
    encode_batch,
    load_tokenizer,
    risky_spans,
    tokenize_function,
    validate_tokenizer,
)
from streamguard.errors import DataError

REPO = Path(__file__).resolve().parents[3]
JULIET = REPO.parent / "shared" / "data" / "juliet" / "train.jsonl.gz"
DEVIGN = REPO.parent / "shared" / "data" / "devign" / "train.jsonl.gz"
ASSET = REPO / "src" / "streamguard" / "data" / "assets" / "c_bpe_tokenizer.json"

SNIPPET = """static int copy_name(struct ctx *c, const char *src, size_t n)
{
    char buf[64];
    if (n == 0)\r\n        return -1;
    memcpy(c->data, src, n);
    strcpy(buf, src);\t// unsafe
    c->x = 0x1Fu + 1.5e3f;
    return snprintf(c->name, sizeof c->name, "%s", buf) < 0;
}
"""
NON_ASCII = "/* café — naïve 😀 */ int \u00e9t\u00e9 = 1; char *s = \"\u4e2d\u6587\"; // \ufffd\x00 end"


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(BUILTIN_TOKENIZER)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    texts = [s["func"] for s in generate_samples(300, seed=3)]
    for path in (JULIET, DEVIGN):
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                texts += [json.loads(line)["func"] for line in itertools.islice(fh, 300)]
    return texts + [SNIPPET, NON_ASCII]


def rust_encode(tok, text):
    enc = tok.backend.encode(text, add_special_tokens=False)
    return enc.ids, enc.offsets


# --------------------------------------------------------------------------- builtin


def test_builtin_loads_fast_and_cached(tok):
    assert tok.is_fast and tok.name == BUILTIN_TOKENIZER
    assert tok.vocab_size == 8192
    assert (tok.cls_id, tok.pad_id, tok.sep_id) == (0, 1, 2)  # RoBERTa layout
    assert [tok.token_to_id(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == [0, 1, 2, 3, 4]
    assert tok.uses_piece_cache
    assert load_tokenizer(BUILTIN_TOKENIZER) is tok  # lru_cache: once per process


def test_asset_size_reasonable():
    assert ASSET.is_file()
    assert ASSET.stat().st_size < 1.5 * 1024 * 1024


def test_encode_round_trips_offsets_ascii(tok, corpus):
    for text in [SNIPPET] + corpus[:50]:
        assert text.isascii()
        ids, offsets = tok.encode(text)
        assert len(ids) == len(offsets) > 0
        assert not {tok.cls_id, tok.sep_id, tok.pad_id} & set(ids)  # no special tokens
        # untrimmed offsets tile the text, and each span is exactly its token's text
        assert "".join(text[s:e] for s, e in offsets) == text
        assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))
        for i, (s, e) in zip(ids, offsets):
            assert tok.decode([i]) == text[s:e]
        assert tok.decode(ids) == text


def test_non_ascii_offsets_and_decode(tok):
    ids, offsets = tok.encode(NON_ASCII)
    assert tok.decode(ids) == NON_ASCII
    assert all(0 <= s <= e <= len(NON_ASCII) for s, e in offsets)
    assert "".join(NON_ASCII[s:e] for s, e in dict.fromkeys(offsets)) == NON_ASCII
    word = NON_ASCII.index("\u00e9t\u00e9")
    covered = {(s, e) for s, e in offsets if s <= word < e}
    assert covered and all(NON_ASCII[s:e].strip() for s, e in covered)


def test_piece_cache_matches_rust_pipeline(tok, corpus):
    texts = corpus + ["x </s> y <s> <pad>", "a\x00b\x7f\x1c c\u00a0d \u2028 e\r\n\f\v\t", "   ", "\n\n\n", "é"]
    for text in texts:
        assert tok.encode(text) == rust_encode(tok, text), text[:80]


_PIECES = list("ab_Z09 .;(){}*<>/\"'\\\t\n\r\x0b\x0c\x00\x1f\x7f") + [
    "strcpy", " int", "0x1F", "é", "😀", "\u00a0", "\ufffd", "\u4e2d", "<s>", "</s>", "\n    "]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(_PIECES), max_size=60).map("".join), st.text(max_size=60)))
def test_piece_cache_matches_rust_pipeline_property(text):
    tok = load_tokenizer(BUILTIN_TOKENIZER)
    assert tok.encode(text) == rust_encode(tok, text)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=127), max_size=80),
                 st.lists(st.sampled_from([p for p in _PIECES if p.isascii()]), max_size=40).map("".join)))
def test_c_split_is_the_split_pattern(text):
    """The C pre-tokeniser of ASCII text finds exactly SPLIT_PATTERN's pieces."""
    assert split_ascii(text) == _SPLIT_RE.findall(text)


def test_c_split_on_real_code_and_refuses_non_ascii(corpus):
    ascii_texts = [t for t in corpus if t.isascii()]
    assert len(ascii_texts) > 500
    for text in ascii_texts + ["", " ", "  x", "\n x", "x  ", "a \t\n  b", "1.5e3f->x", "  \n"]:
        assert split_ascii(text) == _SPLIT_RE.findall(text), text[:80]
    with pytest.raises(ValueError, match="ASCII"):
        split_ascii(NON_ASCII)


def test_encode_batch_same_as_encode(tok, corpus):
    texts = corpus[:100] + [NON_ASCII, "", "\x00"]
    batch = encode_batch(tok, texts)
    assert len(batch) == len(texts)
    for text, (ids, offsets) in zip(texts, batch):
        assert (list(ids), [tuple(o) for o in offsets]) == tok.encode(text)


def test_piece_cache_is_bounded(tok, corpus):
    small = pickle.loads(pickle.dumps(tok))  # its own, empty cache
    small.piece_cache_max = 20
    for text in corpus[:40]:
        assert small.encode(text) == tok.encode(text)
        assert len(small._pieces) <= 20


def test_handle_pickles(tok):
    clone = pickle.loads(pickle.dumps(tok))
    assert clone.encode(SNIPPET) == tok.encode(SNIPPET)
    assert (clone.vocab_size, clone.cls_id, clone.sep_id, clone.pad_id) == (8192, 0, 2, 1)


# --------------------------------------------------------------------------- other sources


def test_local_directory_and_file(tok, tmp_path):
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok.backend, bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>")
    out = tmp_path / "c-bpe"
    fast.save_pretrained(str(out))
    loaded = load_tokenizer(str(out))
    assert loaded.is_fast and loaded.vocab_size == 8192
    assert (loaded.cls_id, loaded.sep_id, loaded.pad_id) == (0, 2, 1)
    assert loaded.encode(SNIPPET) == tok.encode(SNIPPET)
    assert tokenize_function(loaded, SNIPPET) == tokenize_function(tok, SNIPPET)

    as_file = load_tokenizer(str(ASSET))
    assert as_file.encode(SNIPPET) == tok.encode(SNIPPET) and as_file.vocab_size == 8192


def test_missing_path_and_unknown_builtin():
    with pytest.raises(DataError, match="does not exist"):
        load_tokenizer("/nonexistent/dir/tokenizer.json")
    with pytest.raises(DataError, match="builtin:c-bpe"):
        load_tokenizer("builtin:nope")


@pytest.mark.timeout(60)
def test_hub_id_offline_raises_clear_error(monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "streamguard-tests/no-such-tokenizer"
    with pytest.raises(DataError) as info:
        load_tokenizer(name)
    msg = str(info.value)
    assert "\n" not in msg
    assert f'tokenizer "{name}" is not available offline' in msg
    assert "hf download" in msg and "data.tokenizer" in msg and BUILTIN_TOKENIZER in msg


@pytest.mark.timeout(120)
def test_hub_id_offline_message_in_fresh_process(tmp_path):
    """microsoft/codebert-base with an empty hub cache, HF_HUB_OFFLINE set before import."""
    pytest.importorskip("transformers")
    code = ("from streamguard.data.tokens import load_tokenizer\n"
            "from streamguard.errors import DataError\n"
            "try:\n    load_tokenizer('microsoft/codebert-base')\n"
            "except DataError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=100)
    assert res.returncode == 0, res.stderr
    assert ('ERR tokenizer "microsoft/codebert-base" is not available offline: download it with '
            "`hf download microsoft/codebert-base") in res.stdout
    assert "pass the local directory as data.tokenizer, or use builtin:c-bpe" in res.stdout


class _Enc:
    def __init__(self, ids, offsets):
        self.ids, self.offsets = ids, offsets


class _Backend:
    def __init__(self, offsets):
        self._offsets = offsets

    def encode(self, text, add_special_tokens=False):
        return _Enc(list(range(len(self._offsets))), self._offsets)


class _FakeTokenizer:
    def __init__(self, is_fast, backend=None):
        self.is_fast = is_fast
        if backend is not None:
            self.backend_tokenizer = backend


def test_validator_rejects_slow_tokenizer():
    with pytest.raises(DataError, match=r"fast \(Rust") as info:
        validate_tokenizer(_FakeTokenizer(is_fast=False), "some/slow-tokenizer")
    assert '"some/slow-tokenizer"' in str(info.value) and "\n" not in str(info.value)


def test_validator_rejects_missing_offsets():
    with pytest.raises(DataError, match="offsets"):
        validate_tokenizer(_FakeTokenizer(True, _Backend([(0, 0), (0, 0), (0, 0)])), "no-offsets")
    with pytest.raises(DataError, match="offsets"):
        validate_tokenizer(_FakeTokenizer(True, _Backend([])), "empty")
    with pytest.raises(DataError, match=r"fast \(Rust\)"):
        validate_tokenizer(_FakeTokenizer(True), "no-backend")


def test_validator_accepts_good_backends(tok):
    good = _Backend([(0, 3), (3, 8), (8, 9)])
    assert validate_tokenizer(_FakeTokenizer(True, good), "fake") is good
    assert validate_tokenizer(tok.backend, "raw") is tok.backend


# --------------------------------------------------------------------------- risky spans


def test_risky_apis_cover_required_names():
    assert len(RISKY_APIS) >= 15 and len(set(RISKY_APIS)) == len(RISKY_APIS)
    for name in ("strcpy", "strcat", "sprintf", "vsprintf", "gets", "scanf", "memcpy", "memmove", "strncpy",
                 "alloca", "realpath", "system", "popen", "execl", "execlp", "execle", "execv", "execvp",
                 "execve", "malloc", "calloc", "realloc", "free"):
        assert name in RISKY_APIS


def test_risky_spans_finds_each_api():
    for api in RISKY_APIS:
        text = f"void f(char *a, char *b) {{\n    int r = {api}(a, b);\n    r += {api} (b);\n}}"
        spans = risky_spans(text)
        assert [s[2] for s in spans] == [api, api], api
        for s, e, _ in spans:
            assert text[s:e].startswith(api) and text[s:e].endswith("(")


def test_risky_spans_word_boundaries():
    # `\b` before the name and `\s*(` right after: other identifiers do not match
    text = ("my_strcpy_wrapper(a, b); strcpy_s(a, 10, b); __builtin_memcpy(a, b, 4); xfree(p);"
            " freed = 1; char *strcpyish; int system_id; execvpe2(x); /* strcpy */ MEMCPY(a, b, 1);")
    assert risky_spans(text) == []
    assert [s[2] for s in risky_spans("p->free(q); std::free(q);")] == ["free", "free"]


def test_risky_spans_format_strings():
    bad = 'printf(buf); fprintf(stderr, msg); syslog(LOG_ERR, data); vfprintf(fp, fmt, ap);'
    good = 'printf("%s", buf); fprintf(stderr, "%s", msg); printf(); syslog(LOG_ERR, "%s", d); wprintf(L"x");'
    assert [s[2] for s in risky_spans(bad)] == ["printf", "fprintf", "syslog", "vfprintf"]
    assert risky_spans(good) == []
    assert set(FORMAT_APIS) >= {"printf", "fprintf", "syslog"}


# --------------------------------------------------------------------------- windows


def _long_function(tok, n_lines: int, tail: str = "") -> str:
    body = "".join(f"    total = total + values[{i % 97}] * {i % 13};\n" for i in range(n_lines))
    return "int accumulate(int *values)\n{\n    int total = 0;\n" + body + tail + "    return total;\n}\n"


def test_choose_window_short_is_full(tok):
    ids, offsets = tok.encode(SNIPPET)
    assert choose_window(ids, offsets, SNIPPET, max_len=512) == (0, len(ids), "full")


def test_choose_window_keeps_late_strcpy(tok):
    text = _long_function(tok, 230, tail="    char buf[8];\n    strcpy(buf, name);\n")
    ids, offsets = tok.encode(text)
    assert len(ids) >= 3000
    start, end, reason = choose_window(ids, offsets, text, max_len=510)
    assert end - start == 510 and reason == "risky:strcpy"
    cs = text.index("strcpy(")
    kept = text[offsets[start][0]:offsets[end - 1][1]]
    assert "strcpy(buf, name);" in kept
    first = next(i for i, (s, e) in enumerate(offsets) if e > cs)
    assert first - start > 100  # context before the call
    out = tokenize_function(tok, text, max_len=512)
    assert out["window_reason"] == "risky:strcpy" and len(out["input_ids"]) == 512
    assert out["window_start"] == start and out["n_tokens_full"] == len(ids)


def test_choose_window_head_without_risky_calls(tok):
    text = _long_function(tok, 200)
    ids, offsets = tok.encode(text)
    assert choose_window(ids, offsets, text, max_len=100) == (0, 100, "head")


def test_choose_window_prefers_densest_cluster(tok):
    early = "    strcpy(a, b);\n"
    late = "    strcat(a, b);\n    sprintf(a, \"%d\", n);\n    gets(a);\n"
    text = "void f(void)\n{\n" + early + _long_function(tok, 120) + late + "}\n"
    ids, offsets = tok.encode(text)
    start, end, reason = choose_window(ids, offsets, text, max_len=200)
    kept = text[offsets[start][0]:offsets[end - 1][1]]
    assert reason == "risky:strcat"
    assert all(call in kept for call in ("strcat(", "sprintf(", "gets("))


def test_choose_window_ranks_sinks_above_allocation(tok):
    frees = "".join(f"    free(p{i});\n" for i in range(2))
    text = "void f(void)\n{\n" + frees + _long_function(tok, 120) + "    system(cmd);\n}\n"
    ids, offsets = tok.encode(text)
    start, end, reason = choose_window(ids, offsets, text, max_len=120)
    assert reason == "risky:system"
    assert "system(cmd)" in text[offsets[start][0]:offsets[end - 1][1]]


def test_choose_window_rejects_bad_max_len(tok):
    ids, offsets = tok.encode(SNIPPET)
    with pytest.raises(ValueError):
        choose_window(ids, offsets, SNIPPET, max_len=0)
    with pytest.raises(ValueError):
        tokenize_function(tok, SNIPPET, max_len=2)


_FRAGMENTS = ["strcpy(a, b);", "free(p);", "memcpy(d, s, n);", "system(cmd);", "x = y + 1;", "if (a) {", "}",
              "\n", "    ", "é", "\x00", "printf(fmt);", "int i;", "return 0;", " ", "malloc(n * 4)", "execvp(a, b);"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=120), st.integers(min_value=1, max_value=64))
def test_choose_window_property(parts, max_len):
    tok = load_tokenizer(BUILTIN_TOKENIZER)
    text = " ".join(parts)
    ids, offsets = tok.encode(text)
    n = len(ids)
    start, end, reason = choose_window(ids, offsets, text, max_len=max_len)
    assert 0 <= start <= end <= n
    assert end - start <= max_len
    if n <= max_len:
        assert (start, end, reason) == (0, n, "full")
    else:
        assert end - start == max_len
        assert reason == "head" or reason.startswith("risky:")
        if reason.startswith("risky:"):
            api = reason.split(":", 1)[1]
            lo, hi = offsets[start][0], offsets[end - 1][1]
            assert any(a == api and lo <= s and e <= hi for s, e, a in risky_spans(text))
    out = tokenize_function(tok, text, max_len=max_len + 2)
    assert len(out["input_ids"]) == len(out["offsets"]) <= max_len + 2
    assert out["window_start"] == start and out["window_reason"] == reason
    assert out["input_ids"][1:-1] == ids[start:end]
    assert out["offsets"][1:-1] == offsets[start:end]


# --------------------------------------------------------------------------- tokenize_function


def test_tokenize_function_shape(tok):
    out = tokenize_function(tok, SNIPPET, max_len=512)
    assert set(out) == {"input_ids", "offsets", "n_tokens_full", "window_start", "window_reason"}
    ids, offsets = tok.encode(SNIPPET)
    assert out["input_ids"] == [tok.cls_id, *ids, tok.sep_id]
    assert out["offsets"] == [(0, 0), *offsets, (0, 0)]
    assert out["n_tokens_full"] == len(ids) and out["window_start"] == 0 and out["window_reason"] == "full"


def reference_window(tok, text, max_len):
    ids, offsets = tok.encode(text)
    start, end, reason = choose_window(ids, offsets, text, max_len - 2)
    return {"input_ids": [tok.cls_id, *ids[start:end], tok.sep_id], "offsets": [(0, 0), *offsets[start:end], (0, 0)],
            "n_tokens_full": len(ids), "window_start": start, "window_reason": reason}


def test_tokenize_function_matches_reference(tok, corpus):
    texts = corpus + [_long_function(tok, 230, tail="    strcpy(buf, name);\n"), NON_ASCII * 40, "<s>" + SNIPPET * 30]
    reasons = set()
    for text in texts:
        for max_len in (512, 128, 24):
            out = tokenize_function(tok, text, max_len=max_len)
            assert out == reference_window(tok, text, max_len)
            reasons.add(out["window_reason"].split(":")[0])
    assert reasons == {"full", "head", "risky"}


@pytest.mark.parametrize("text", ["", " ", "\x00", "\x00\x00int\x00", "\ufffd\ufffd x = 1;", "a\udcffb strcpy(x, y);",
                                  "\udcff" * 700, "é" * 3000, "</s><s>" * 300, "\n" * 2000, "x" * 100_000])
def test_odd_text_does_not_raise(tok, text):
    out = tokenize_function(tok, text, max_len=64)
    assert out["input_ids"][0] == tok.cls_id and out["input_ids"][-1] == tok.sep_id
    assert len(out["input_ids"]) == len(out["offsets"]) <= 64
    assert all(0 <= s <= e <= len(text) for s, e in out["offsets"])
    if not text:
        assert out["input_ids"] == [tok.cls_id, tok.sep_id] and out["window_reason"] == "full"
    char_to_byte_offsets(text, out["offsets"])


# --------------------------------------------------------------------------- byte offsets


def test_char_to_byte_offsets(tok):
    ids, offsets = tok.encode(SNIPPET)
    assert char_to_byte_offsets(SNIPPET, offsets) == offsets  # ASCII: identical
    for text in (NON_ASCII, "a\udcffé😀 x"):
        ids, offsets = tok.encode(text)
        raw = text.encode("utf-8", errors="replace")  # how the graph side encodes source
        got = char_to_byte_offsets(text, offsets)
        assert got == [(len(text[:s].encode("utf-8", "replace")), len(text[:e].encode("utf-8", "replace")))
                       for s, e in offsets]
        assert all(0 <= s <= e <= len(raw) for s, e in got)
    assert char_to_byte_offsets("é", []) == []


# --------------------------------------------------------------------------- script


def test_train_script_help():
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "train_tokenizer.py"), "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    for word in ("byte-level BPE", "--juliet", "--out", "--vocab-size", "8192"):
        assert word in res.stdout
