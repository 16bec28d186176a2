"""report.html: a sweep's groups, comparisons, figures and jobs on one page that needs nothing
else: figures embedded as data URLs, no script, no font or style sheet from anywhere."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mnist_lab.sweeps.tables import html_table

if TYPE_CHECKING:
    from mnist_lab.sweeps.groups import Group
    from mnist_lab.sweeps.search import Search

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 80em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


def image(name: str, data: bytes, alt: str) -> str:
    """A PNG embedded in the page."""
    encoded = base64.b64encode(data).decode()
    return f'<img id="{html.escape(name)}" alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'


def paragraphs(lines: Sequence[str]) -> str:
    """Lines of text as paragraphs, `code` in backquotes as code."""
    return "".join("<p>" + re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(line)) + "</p>" for line in lines)


def page(title: str, sections: Sequence[tuple[str, str]]) -> str:
    """The whole page: a title and (heading, HTML body) sections."""
    body = "".join(f"<section><h2>{html.escape(h)}</h2>{content}</section>" for h, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        # The page asks for nothing: not even a favicon, and no script may run.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
        "style-src 'unsafe-inline'\">"
        f'<link rel="icon" href="data:,"><title>{html.escape(title)}</title><style>{STYLE}</style></head>'
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def sweep_page(
    sweep: str,
    header: Sequence[str],
    groups: Sequence[Group],
    search: Search | None,
    figures: dict[str, bytes],
    jobs: tuple[Sequence[str], Sequence[Sequence[str]]],
) -> str:
    """A sweep's report.html: the groups and comparisons, the figures, the search, the jobs."""
    from mnist_lab.sweeps import groups as grouping

    sections = [("What ran", paragraphs(header))]
    if groups:
        body = html_table(*grouping.table(list(groups)), css="groups") + paragraphs(grouping.notes(list(groups)))
        sections.append((grouping.title(list(groups)), body))
    shown = [(name, alt) for name, alt in CAPTIONS if name in figures]
    if any(name in figures for name in ("curves", "seeds")):
        sections.append(
            ("Figures", "".join(image(n, figures[n], alt) for n, alt in shown if not n.startswith("optuna")))
        )
    if search is not None:
        from mnist_lab.sweeps.search import best_line

        body = paragraphs([best_line(search)])
        if search.importances:
            rows = [[k, f"{v:.3f}"] for k, v in search.importances.items()]
            body += html_table(["parameter", "importance (optuna.importance)"], rows, css="importance")
        elif search.note:
            body += paragraphs([search.note])
        body += "".join(image(n, figures[n], alt) for n, alt in shown if n.startswith("optuna"))
        sections.append(("Search (Optuna)", body))
    sections.append((JOBS, html_table(*jobs, css="jobs")))
    return page(f"Sweep {sweep}", sections)


JOBS = "Jobs, sorted by test/acc (val/acc_best where untested)"
CAPTIONS = (
    ("curves", "validation accuracy by epoch, one line per group, a band from the worst to the best seed"),
    ("seeds", "test accuracy of each seed, group by group, with the group's mean and 95% interval"),
    ("optuna_history", "the search's optimization history: the objective of each trial and the best so far"),
    ("optuna_importance", "each parameter's importance (optuna.importance)"),
)
