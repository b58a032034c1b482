"""Blocks -> one self-contained HTML page: inline CSS, PNGs as data URIs, no script, no links out.

It opens from disk with no network; every figure links its CSV under `data/` next to it.
"""

from __future__ import annotations

import base64
from html import escape

from sparse_attention_hub.report.document import Block, Cell, Figure, Heading, Paragraph, Table

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2433;
       margin: 0 auto; padding: 24px 32px 64px; max-width: 1280px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 34px 0 10px;
     border-bottom: 1px solid #dde2ea; padding-bottom: 4px; } h3 { font-size: 15px; }
p { max-width: 920px; } .sub { color: #5b6578; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border: 1px solid #dde2ea; padding: 5px 9px; vertical-align: top; }
th { background: #f3f5f9; font-weight: 600; text-align: left; }
td small { display: block; color: #5b6578; font-size: 11px; }
td.complete { text-align: right; }
td.key { font-weight: 600; background: #fafbfc; }
td.baseline { font-weight: 700; background: #e8f0fe; }
td.failed { background: #fde2e1; color: #9b1c1c; }
td.corrupt { background: #fbe3f3; color: #8a1569; }
td.stale { background: #fff3cd; color: #7a5b00; }
td.running, td.partial { background: #e6f4ff; color: #0b5394; }
td.missing { background: #f1f1f1; color: #777; }
td[title] { cursor: help; }
sup { font-size: 10px; }
ol.notes { font-size: 12px; color: #3b4456; margin: 2px 0 18px; padding-left: 22px; }
figure { margin: 16px 0 24px; } figure img { max-width: 100%; border: 1px solid #eef0f4; }
figcaption { font-size: 12px; color: #5b6578; max-width: 920px; }
table.pairs td:first-child { white-space: nowrap; }
table.pairs td { word-break: break-word; max-width: 980px; }
"""


def render_html(title: str, subtitle: str, blocks: list[Block]) -> str:
    """The whole page as one string."""
    body = "\n".join(_block(block) for block in blocks)
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{escape(title)}</h1>\n<p class='sub'>{escape(subtitle)}</p>\n{body}\n</body>\n</html>\n"
    )


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{escape(block.text)}</p>"
    if isinstance(block, Table):
        return _table(block)
    return _figure(block)


def _table(table: Table) -> str:
    pairs = all(not h for h in table.header)
    head = (
        "" if pairs else "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in table.header) + "</tr>"
    )
    rows = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in table.rows)
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    notes = ""
    if table.notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in table.notes)
        notes = f"<ol class='notes'>{items}</ol>"
    css = " class='pairs'" if pairs else ""
    return f"<table{css}>{caption}{head}{rows}</table>{notes}"


def _cell(cell: Cell) -> str:
    attributes = f" class='{escape(cell.state)}'" if cell.state else ""
    if cell.title:
        attributes += f" title='{escape(cell.title)}'"
    text = escape(cell.text)
    if cell.note is not None:
        text += f"<sup>[{cell.note}]</sup>"
    if cell.detail:
        text += f"<small>{escape(cell.detail)}</small>"
    return f"<td{attributes}>{text}</td>"


def _figure(figure: Figure) -> str:
    data = base64.b64encode(figure.png).decode("ascii")
    return (
        f"<figure><h3>{escape(figure.title)}</h3>"
        f"<img alt='{escape(figure.title)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{escape(figure.caption)} Data: "
        f"<a href='data/{escape(figure.name)}.csv'>data/{escape(figure.name)}.csv</a>"
        "</figcaption></figure>"
    )
