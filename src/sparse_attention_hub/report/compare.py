"""Two result dirs side by side: the jobs both have (same model, config, benchmark, subset).

Typical use: the same study on two machines, two library versions, or before/after a change.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.report.document import Block, Cell, Figure, Heading, Paragraph, Table
from sparse_attention_hub.report.figures import png_bytes
from sparse_attention_hub.report.tables import KEYS


def compare_frame(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """Score and density of the jobs both kept tables have, and the score difference."""
    shared = sorted(set(first["sparse_config"]) & set(second["sparse_config"]))
    if not shared:
        raise ConfigError(
            "the two result dirs have no sparse config in common to compare: "
            f"{sorted(set(first['sparse_config']))} vs {sorted(set(second['sparse_config']))}"
        )
    columns = [*KEYS, "score", "density"]
    both = first[columns].merge(second[columns], on=KEYS, suffixes=("_a", "_b"))
    both["delta"] = both["score_b"] - both["score_a"]
    return both.sort_values(KEYS).reset_index(drop=True)


def compare_blocks(frame: pd.DataFrame, name_a: str, name_b: str) -> list[Block]:
    """The comparison section: a table of the shared jobs and a score-vs-score scatter."""
    blocks: list[Block] = [
        Heading("Comparison"),
        Paragraph(
            f"A = {name_a}, B = {name_b}: {len(frame)} job(s) present and complete in both. "
            "Δ = score B − score A."
        ),
    ]
    rows = [
        [
            Cell(f"{r.model} · {r.sparse_config}", state="key"),
            Cell(f"{r.benchmark}/{r.subset}"),
            Cell(_number(r.score_a), state="complete"),
            Cell(_number(r.score_b), state="complete"),
            Cell(_number(r.delta, signed=True), state="complete"),
            Cell(f"{_number(r.density_a, 2)} / {_number(r.density_b, 2)}", state="complete"),
        ]
        for r in frame.itertuples()
    ]
    header = ["model · config", "benchmark/subset", "score A", "score B", "Δ", "density A / B"]
    blocks.append(Table(header, rows))
    if not frame.empty:
        blocks.append(_scatter(frame, name_a, name_b))
    return blocks


def _scatter(frame: pd.DataFrame, name_a: str, name_b: str) -> Figure:
    figure = MplFigure(figsize=(5.2, 4.8), dpi=100)
    ax = figure.subplots()
    for index, (config, group) in enumerate(frame.groupby("sparse_config")):
        ax.scatter(group["score_a"], group["score_b"], s=30, color=f"C{index % 10}", label=config)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"score A ({name_a})")
    ax.set_ylabel(f"score B ({name_b})")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Figure(
        "compare",
        "A vs B, per job",
        "One point per shared job; on the dashed line both dirs scored the same.",
        png_bytes(figure),
        frame,
    )


def _number(value: float, digits: int = 1, signed: bool = False) -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
