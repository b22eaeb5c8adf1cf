"""Reports as two files from one description: Markdown with relative image links (for a
repository or a notebook) and a single self-contained HTML file with the PNGs embedded as
base64 (to mail or open from S3 without its folder)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    """Paragraphs (plain text)."""
    table: list[list[str]] | None = None
    """Rows of cells, the first row being the header."""
    images: list[tuple[str, str]] = field(default_factory=list)
    """(caption, path relative to the report's folder) of PNGs."""


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for para in s.text:
            lines += [para, ""]
        if s.table:
            head, *rows = s.table
            lines.append("| " + " | ".join(_md_cell(c) for c in head) + " |")
            lines.append("|" + "|".join(" --- " for _ in head) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            lines.append("")
        for caption, rel in s.images:
            lines += [f"![{caption}]({rel})", ""]
    return "\n".join(lines)


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;
text-align:right}th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}figcaption{font-size:.9em;color:#555}
img{max-width:520px}"""


def to_html(title: str, sections: list[Section], base: Path) -> str:
    """HTML with every image read from `base / rel` and embedded (missing ones are noted)."""
    out = ["<!doctype html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        out += [f"<p>{html.escape(p)}</p>" for p in s.text]
        if s.table:
            head, *rows = s.table
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in head)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</tbody></table>")
        for caption, rel in s.images:
            path = base / rel
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                out.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            else:
                out.append(f"<p><em>{html.escape(caption)}: image {html.escape(rel)} is missing</em></p>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report_files(out, rel_stem: str, title: str, sections: list[Section]) -> tuple[str, str]:
    """Write `<rel_stem>.md` and `<rel_stem>.html` through a RunDir-like `out` (write_text,
    local). Returns their relative names."""
    md, page = f"{rel_stem}.md", f"{rel_stem}.html"
    out.write_text(md, to_markdown(title, sections))
    out.write_text(page, to_html(title, sections, Path(out.local)))
    return md, page
