"""A tiny document model rendered both as terminal-readable Markdown and as self-contained HTML.

A report is built once as a list of blocks (headings, paragraphs, tables, images);
`markdown()` links images under plots/, `html()` embeds them as base64 PNG with
inline CSS, so report.html opens offline and loads nothing from elsewhere.
"""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from citune.evaluation.metrics import HEADLINE
from citune.io import atomic_write_bytes, atomic_write_text

MISSING = "n/a"


def fmt(x: Any, digits: int = 2, signed: bool = False) -> str:
    """A number for a table: fixed decimals, `n/a` for None."""
    if x is None:
        return MISSING
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:+d}" if signed else f"{x:,d}"
    if isinstance(x, float):
        return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"
    return str(x)


def fmt_pm(mean: Any, std: Any, digits: int = 2, signed: bool = False) -> str:
    """`mean ± std`, or just the mean when there is no std."""
    if mean is None:
        return MISSING
    return fmt(mean, digits, signed) + ("" if std is None else f" ± {std:.{digits}f}")


def headline_rows(metrics: dict) -> list[tuple[str, str, str]]:
    """(label, value, definition) of each headline metric of a run's metrics.json, in catalogue order;
    RG mean with its within-run std."""
    rows = []
    for m in HEADLINE:
        if m.optional and metrics.get(m.key) is None:
            continue
        if m.key == "rg_mean":
            rows.append(("RG mean ± std", fmt_pm(metrics.get("rg_mean"), metrics.get("rg_std")), m.definition))
        else:
            rows.append((m.label, fmt(metrics.get(m.key), signed=m.signed), m.definition))
    return rows


def fmt_seconds(s: Any) -> str:
    if s is None:
        return MISSING
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


@dataclass(frozen=True)
class Link:
    text: str
    md_href: str
    html_href: str


@dataclass
class Table:
    headers: list[str]
    rows: list[list[Any]]
    right: set[int] = field(default_factory=set)  # right-aligned columns (numbers)


@dataclass
class Image:
    name: str  # file name under plots/
    png: bytes
    caption: str


@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", (level, text)))

    def para(self, text: str) -> None:
        self.blocks.append(("p", text))

    def bullets(self, items: Sequence[str]) -> None:
        self.blocks.append(("ul", list(items)))

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int = 1,
              numeric_to: int | None = None) -> None:
        """Columns numeric_from .. numeric_to - 1 (default: to the end) hold numbers and are right-aligned."""
        right = set(range(numeric_from, len(headers) if numeric_to is None else numeric_to))
        self.blocks.append(("table", Table(list(headers), [list(r) for r in rows], right)))

    def image(self, name: str, png: bytes | None, caption: str) -> None:
        if png:
            self.blocks.append(("img", Image(name, png, caption)))

    @property
    def images(self) -> list[Image]:
        return [b for kind, b in self.blocks if kind == "img"]

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, b in self.blocks:
            out += _MD[kind](b) + [""]
        return "\n".join(out).rstrip() + "\n"

    def html(self) -> str:
        body = "\n".join(_HTML[kind](b) for kind, b in self.blocks)
        return _PAGE.format(title=html.escape(self.title), css=_CSS, body=body)


# ---------------------------------------------------------------- markdown

def _md_cell(c: Any) -> str:
    text = f"[{c.text}]({c.md_href})" if isinstance(c, Link) else str(c)
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(t: Table) -> list[str]:
    cells = [[_md_cell(c) for c in row] for row in [t.headers, *t.rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(t.headers))]

    def line(row: list[str]) -> str:
        padded = [c.rjust(w) if i in t.right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in t.right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return [line(cells[0]), rule] + [line(r) for r in cells[1:]]


_MD = {
    "h": lambda b: ["#" * b[0] + " " + b[1]],
    "p": lambda b: [b],
    "ul": lambda b: [f"- {x}" for x in b],
    "table": _md_table,
    "img": lambda b: [f"![{b.caption}](plots/{b.name})", "", f"*{b.caption}*"],
}


# ---------------------------------------------------------------- html

def _html_cell(c: Any, tag: str, right: bool) -> str:
    text = (f'<a href="{html.escape(c.html_href)}">{html.escape(c.text)}</a>' if isinstance(c, Link)
            else html.escape(str(c)))
    return f'<{tag}{" class=num" if right else ""}>{text}</{tag}>'


def _html_table(t: Table) -> str:
    head = "".join(_html_cell(c, "th", i in t.right) for i, c in enumerate(t.headers))
    rows = "".join("<tr>" + "".join(_html_cell(c, "td", i in t.right) for i, c in enumerate(r)) + "</tr>"
                   for r in t.rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_img(b: Image) -> str:
    data = base64.b64encode(b.png).decode("ascii")
    cap = html.escape(b.caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


_HTML = {
    "h": lambda b: f"<h{b[0]}>{html.escape(b[1])}</h{b[0]}>",
    "p": lambda b: f"<p>{html.escape(b)}</p>",
    "ul": lambda b: "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b) + "</ul>",
    "table": _html_table,
    "img": _html_img,
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ccc; padding-bottom: .3em; }
h2 { margin-top: 1.8em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 9px; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def save(doc: Doc, out_dir: Path, managed: Sequence[str] = ()) -> Path:
    """Write plots/*.png, report.md and report.html atomically; return report.md.

    PNGs named in `managed` that this document no longer has (a plot that stopped
    applying) are removed so that plots/ never shows stale figures.
    """
    out_dir = Path(out_dir)
    written = set()
    for img in doc.images:
        atomic_write_bytes(out_dir / "plots" / img.name, img.png)
        written.add(img.name)
    for name in set(managed) - written:
        (out_dir / "plots" / name).unlink(missing_ok=True)
    atomic_write_text(out_dir / "report.html", doc.html())
    md = out_dir / "report.md"
    atomic_write_text(md, doc.markdown())
    return md
