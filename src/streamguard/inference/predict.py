"""`streamguard predict BUNDLE FILE_OR_DIR...`: score every function of C/C++ source files.

Files: a file is read when its extension is a C/C++ one (.c .h .cc .cpp .cxx .hpp .hh;
`--lang` forces a language for other names); a directory is searched recursively for such
files. Each file is read as bytes and decoded as UTF-8; a file that is not valid UTF-8 is
decoded with replacement characters and flagged `non_utf8` (its functions are still
scored). Files over `max_file_bytes` are skipped (`too_large`), files without any function
are listed (`no_functions`).

Functions are found with tree-sitter (`inference.functions`), processed exactly as the
training data was (parse tiers `full`, `partial` -- errors kept in the graph -- and `tokens`
-- too broken for a tree: the token sequence only), and scored by the bundle. The verdict
is `vulnerable` when P(vulnerable) >= the bundle's threshold (picked on validation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from streamguard.data.sources import C_EXTENSIONS
from streamguard.errors import DataError
from streamguard.inference.functions import find_functions, language_of

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 5_000_000


@dataclass
class FileReport:
    path: str
    lang: str | None
    status: str = "ok"                 # ok | no_functions | too_large | unreadable
    functions: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class FunctionResult:
    file: str
    function: str
    start_line: int
    end_line: int
    probability: float | None
    verdict: str                       # vulnerable | safe | skipped
    tier: str | None = None
    flags: list[str] = field(default_factory=list)
    cwe: list[dict] | None = None

    def to_dict(self) -> dict:
        d = {"file": self.file, "function": self.function, "start_line": self.start_line,
             "end_line": self.end_line, "probability": self.probability, "verdict": self.verdict, "tier": self.tier,
             "flags": self.flags}
        if self.cwe is not None:
            d["cwe"] = self.cwe
        return d


def collect_files(inputs: list[str], *, lang: str | None = None) -> list[tuple[Path, str]]:
    """(path, language) of every source file named or found under a named directory."""
    out: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item).expanduser()
        if str(item).startswith("s3://"):
            raise DataError(f"{item}: predict reads local files and directories; copy the sources locally first")
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in C_EXTENSIONS)
            if not found:
                raise DataError(f"{item}: no C/C++ source files ({', '.join(sorted(C_EXTENSIONS))}) in this directory")
            out += [(p, lang or language_of(str(p))) for p in found]
        elif path.is_file():
            detected = lang or language_of(str(path))
            if detected is None:
                raise DataError(f"{item}: not a C/C++ source file by its extension ({', '.join(sorted(C_EXTENSIONS))}); "
                                "pass --lang c or --lang cpp to score it anyway")
            out.append((path, detected))
        else:
            raise DataError(f"{item}: no such file or directory")
    return out


def read_source(path: Path, max_bytes: int) -> tuple[str | None, list[str], str]:
    """(text, notes, status): UTF-8 text (replacement characters for invalid bytes, noted)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, [f"{size:,} bytes is over the {max_bytes:,}-byte limit (--max-file-bytes)"], "too_large"
        data = path.read_bytes()
    except OSError as exc:
        return None, [f"cannot read: {exc.strerror}"], "unreadable"
    try:
        return data.decode("utf-8"), [], "ok"
    except UnicodeDecodeError as exc:
        note = f"non_utf8: not valid UTF-8 (first bad byte at offset {exc.start}); decoded with replacement characters"
        return data.decode("utf-8", errors="replace"), [note], "ok"


def predict_files(bundle, inputs: list[str], *, lang: str | None = None,
                  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, progress: bool = True) -> tuple[list[FunctionResult],
                                                                                                  list[FileReport]]:
    files = collect_files(inputs, lang=lang)
    records, where, reports = [], {}, []
    for path, file_lang in files:
        text, notes, status = read_source(path, max_file_bytes)
        report = FileReport(str(path), file_lang, status=status, notes=notes)
        reports.append(report)
        if text is None:
            continue
        flags = ["non_utf8"] if notes else []
        try:
            found = find_functions(text, file_lang)
        except Exception as exc:  # noqa: BLE001 -- tree-sitter is error tolerant; this guards the unexpected
            report.status, report.notes = "unreadable", [*notes, f"parser failed: {type(exc).__name__}: {exc}"]
            continue
        if not found:
            report.status = "no_functions"
            continue
        report.functions = len(found)
        for f in found:
            idx = len(records)
            records.append({"idx": idx, "func": f.text, "lang": file_lang})
            where[idx] = (str(path), f, [*flags, *(["recovered"] if f.recovered else [])])
    scored = bundle.score_records(records, progress=progress) if records else {}
    results = []
    for idx in range(len(records)):
        path, f, flags = where[idx]
        s = scored.get(idx, {"skipped": "failed:unknown"})
        if "skipped" in s:
            results.append(FunctionResult(path, f.name, f.start_line, f.end_line, None, "skipped",
                                          flags=[*flags, f"skipped:{s['skipped']}"]))
            continue
        extra = [k for k in ("truncated_nodes", "truncated_source") if s.get(k)]
        verdict = "vulnerable" if s["prob"] >= bundle.threshold else "safe"
        results.append(FunctionResult(path, f.name, f.start_line, f.end_line, s["prob"], verdict, tier=s["tier"],
                                      flags=[*flags, *extra], cwe=s.get("cwe")))
    return results, reports


def as_json(bundle, results: list[FunctionResult], reports: list[FileReport]) -> dict:
    return {"bundle": str(bundle.root), "track": bundle.meta["track"], "threshold": bundle.threshold,
            "run": bundle.meta["run"]["name"], "functions": [r.to_dict() for r in results],
            "files": [{"path": r.path, "lang": r.lang, "status": r.status, "functions": r.functions, "notes": r.notes}
                      for r in reports],
            "summary": {"files": len(reports), "functions": len(results),
                        "vulnerable": sum(r.verdict == "vulnerable" for r in results),
                        "skipped": sum(r.verdict == "skipped" for r in results)}}


def print_table(bundle, results: list[FunctionResult], reports: list[FileReport], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    t = Table(title=f"{len(results)} functions in {len(reports)} files ({bundle.meta['track']} bundle, "
                    f"threshold {bundle.threshold:.2f})")
    for col, justify in (("file", "left"), ("function", "left"), ("lines", "right"), ("P(vulnerable)", "right"),
                         ("verdict", "left"), ("notes", "left")):
        t.add_column(col, justify=justify, overflow="fold")
    style = {"vulnerable": "bold red", "safe": "green", "skipped": "yellow"}
    for r in results:
        notes = [*([f"tier {r.tier}"] if r.tier and r.tier != "full" else []), *r.flags]
        if r.cwe:
            notes.append("likely " + ", ".join(f"{c['cwe']} {c['prob']:.2f}" for c in r.cwe[:2]))
        t.add_row(r.file, r.function, f"{r.start_line}-{r.end_line}",
                  "n/a" if r.probability is None else f"{r.probability:.3f}",
                  f"[{style[r.verdict]}]{r.verdict}[/]", "; ".join(notes))
    console.print(t)
    for rep in reports:
        if rep.status != "ok" or rep.notes:
            what = {"no_functions": "no functions found", "too_large": "skipped", "unreadable": "skipped"}.get(
                rep.status, "note")
            console.print(f"[yellow]{rep.path}: {what}[/]" + (f" ({'; '.join(rep.notes)})" if rep.notes else ""))
