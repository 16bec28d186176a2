"""Tables of text cells, written as Markdown (summary.md, the terminal) or HTML (report.html)."""

from __future__ import annotations

import html
from collections.abc import Sequence


def markdown(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The table's lines in Markdown."""
    cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in cells]


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], css: str = "") -> str:
    """The table as an HTML <table>, every cell escaped."""
    top = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{top}</tr></thead><tbody>{body}</tbody></table>'
