"""The analysis report: one Markdown file gathering every section's text, tables and figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gpte.atomic import atomic_path

REPORT_FILE = "report.md"


@dataclass
class Section:
    """One part of the report.

    Attributes:
        name: the section's key (``gpte.analysis.analyze.SECTIONS``).
        title: its heading.
        markdown: its body (text and tables).
        figures: PNG file names, relative to the report folder.
        data: its figures as JSON-able values (kept in ``sections/NAME.json``).
    """

    name: str
    title: str
    markdown: str
    figures: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table; floats are written with 4 significant decimals."""

    def cell(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(folder: str | Path, title: str, sections: Sequence[Section]) -> Path:
    """Write ``folder/report.md``: the title, a contents list, then each section with its figures."""
    folder = Path(folder)
    parts = [f"# {title}", "", "Contents: " + ", ".join(f"[{s.title}](#{_anchor(s.title)})" for s in sections), ""]
    for section in sections:
        parts += [f"## {section.title}", "", section.markdown.strip(), ""]
        parts += [f"![{Path(figure).stem}]({figure})\n" for figure in section.figures]
    with atomic_path(folder / REPORT_FILE, overwrite=True) as temporary:
        temporary.write_text("\n".join(parts), encoding="utf-8")
    return folder / REPORT_FILE


def _anchor(title: str) -> str:
    return "".join(ch for ch in title.lower().replace(" ", "-") if ch.isalnum() or ch == "-")
