"""A document as blocks (headings, paragraphs, tables, charts...) and its two renderings: Markdown
with the charts beside it, and one self-contained HTML page with the charts embedded."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flaskbench.measure.stats import Interval


def number(value: float | int | None, digits: int = 1) -> str:
    """A figure as every table shows it: "-" for none, "∞" for unbounded, whole counts as they
    are, others with thousands separators."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if value == float("inf"):
        return "∞"
    return f"{value:,.{digits}f}"


def with_interval(value: float | None, interval: Interval | None) -> str:
    """A figure followed by its interval, "12.3 (11.9-12.8)", when it has one."""
    if value is None or interval is None:
        return number(value)
    return f"{number(value)} ({number(interval.low)}-{number(interval.high)})"


def ratio_with_interval(ratio: float | None, interval: Interval | None) -> str:
    """A ratio to three decimals, "1.034 (1.012-1.057)", with its interval when it has one."""
    if ratio is None:
        return "-"
    if interval is None:
        return f"{ratio:.3f}"
    return f"{ratio:.3f} ({number(interval.low, 3)}-{number(interval.high, 3)})"


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    path: Path
    alt: str


@dataclass(frozen=True)
class Gallery:
    """Charts side by side (small multiples), two to a row."""

    images: tuple[Image, ...]


@dataclass(frozen=True)
class Group:
    """A section the HTML page folds away until opened (no script needed); Markdown shows it
    as a heading and its blocks."""

    title: str
    blocks: tuple[Block, ...]
    open: bool = False


@dataclass(frozen=True)
class Code:
    text: str


Block = Heading | Paragraph | Bullets | Table | Image | Gallery | Group | Code


def render_markdown(blocks: Sequence[Block], base: Path) -> str:
    out: list[str] = []
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append(f"{'#' * level} {text}")
            case Paragraph(text):
                out.append(text)
            case Bullets(items):
                out.append("\n".join(f"- {item}" for item in items))
            case Table(headers, rows):
                lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                lines += [
                    "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                    for row in rows
                ]
                out.append("\n".join(lines))
            case Image(path, alt):
                out.append(_markdown_image(path, alt, base))
            case Gallery(images):
                # A table of images shows them side by side on GitHub.
                pairs = [images[i : i + 2] for i in range(0, len(images), 2)]
                lines = ["| | |", "|---|---|"]
                lines += [
                    "| " + " | ".join(_markdown_image(i.path, i.alt, base) for i in pair) + " |"
                    for pair in pairs
                ]
                out.append("\n".join(lines))
            case Group(title, inner, _):
                out.append(f"### {title}")
                out.append(render_markdown(inner, base).rstrip("\n"))
            case Code(text):
                out.append(f"```\n{text.rstrip()}\n```")
    return "\n\n".join(out) + "\n"


def _markdown_image(path: Path, alt: str, base: Path) -> str:
    return f"![{alt}]({path.relative_to(base).as_posix()})"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} img{max-width:100%;display:block;margin:1em 0}
code{background:#f3f3f3;padding:0 3px}
h1{font-size:1.5em;margin:0.2em 0} body>img:first-of-type{margin:0.3em 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:8px}
.gallery img{margin:0}
details{border:1px solid #ddd;border-radius:4px;padding:0 1em;margin:0.6em 0}
summary{cursor:pointer;font-weight:600;font-size:1.1em;padding:0.5em 0}
"""


def _inline(text: str) -> str:
    """The little Markdown the sentences use: **bold** and `code`."""
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(blocks: Sequence[Block], title: str) -> str:
    """One file: the charts are embedded, so it can be mailed or published as it is."""
    return html_page(title, "\n".join(_html_blocks(blocks)), _CSS)


def html_page(title: str, body: str, css: str) -> str:
    """A whole page, self-contained: no script, nothing fetched."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title><style>{css}</style></head><body>\n"
        f"{body}\n</body></html>\n"
    )


def _html_image(image: Image) -> str:
    data = base64.b64encode(image.path.read_bytes()).decode()
    return f'<img alt="{html.escape(image.alt)}" src="data:image/png;base64,{data}">'


def _html_blocks(blocks: Sequence[Block]) -> list[str]:
    out = []
    for block in blocks:
        match block:
            case Heading(level, text):
                out.append(f"<h{level}>{_inline(text)}</h{level}>")
            case Paragraph(text):
                out.append(f"<p>{_inline(text)}</p>")
            case Bullets(items):
                out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            case Table(headers, rows):
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                body = "".join(
                    "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                    for row in rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            case Image():
                out.append(_html_image(block))
            case Gallery(images):
                out.append(
                    '<div class="gallery">' + "".join(_html_image(i) for i in images) + "</div>"
                )
            case Group(title, inner, opened):
                out.append(
                    f"<details{' open' if opened else ''}><summary>{_inline(title)}</summary>"
                )
                out += _html_blocks(inner)
                out.append("</details>")
            case Code(text):
                out.append(f"<pre>{html.escape(text.rstrip())}</pre>")
    return out
