"""The report as a list of plain blocks, rendered once to HTML and once to Markdown.

Sections decide *what* to say; `html.py` and `markdown.py` decide only how it looks, so the two
files always carry the same content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Cell:
    """One table cell: its text, a smaller second line, a state (CSS class) and a hover note."""

    text: str
    detail: str = ""
    state: str = ""
    title: str = ""
    note: int | None = None  # footnote number, when the cell has one


@dataclass
class Table:
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)  # footnote n is notes[n - 1]
    caption: str = ""


@dataclass
class Figure:
    """A plot: PNG bytes for the page and the CSV of exactly what it draws."""

    name: str  # file stem: figures/<name>.png and data/<name>.csv
    title: str
    caption: str
    png: bytes
    data: pd.DataFrame


Block = Heading | Paragraph | Table | Figure
