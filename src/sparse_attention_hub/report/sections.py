"""What the report says, as blocks: the state of the tree, one score grid per model, the plots.

A grid cell of a complete job shows its score, the share of the baseline kept and its density; any
other cell shows its state (failed, corrupt, stale, running, partial, missing) with the reason as
a hover title and as a numbered footnote under the table.
"""

from __future__ import annotations

import math
from collections import Counter

import pandas as pd

from sparse_attention_hub.report import figures
from sparse_attention_hub.report.document import Block, Cell, Heading, Paragraph, Table
from sparse_attention_hub.report.tree import STATES, JobCell

MISSING_REASON = "no job dir: not run yet (or not part of this experiment)"


def overview(cells: list[JobCell], baseline: str) -> list[Block]:
    counts = Counter(c.state for c in cells)
    states = ", ".join(f"{counts[s]} {s}" for s in STATES if counts.get(s))
    return [
        Paragraph(
            f"{len(cells)} job dirs on disk: {states or 'none yet'}. Scores are 0-100; "
            f"'kept' is the score as a share of the {baseline!r} score on the same model and "
            "subset; density is the mean fraction of keys attended. Cells that are not complete "
            "say why on hover and in the notes under each table."
        )
    ]


def score_grid(cells: list[JobCell], table: pd.DataFrame, model: str, baseline: str) -> Table:
    """Config x benchmark/subset for one model, plus a mean column over the complete cells."""
    mine = [c for c in cells if c.model == model]
    columns = sorted({c.column for c in mine})
    configs = sorted({c.sparse_config for c in mine}, key=lambda n: (n != baseline, n))
    by_key = {(c.sparse_config, c.column): c for c in mine}
    scores = table[table["model"] == model].assign(
        column=lambda t: t["benchmark"] + "/" + t["subset"]
    )
    values = {(r.sparse_config, r.column): r for r in scores.itertuples()}
    notes: list[str] = []
    rows = []
    for config in configs:
        label = f"{config} (baseline)" if config == baseline else config
        row = [Cell(label, state="baseline" if config == baseline else "key")]
        for column in columns:
            cell = by_key.get((config, column))
            value = values.get((config, column))
            if cell is not None and cell.state == "complete" and value is not None:
                row.append(_score_cell(value.score, value.kept, value.density, config == baseline))
                continue
            state = cell.state if cell is not None else "missing"
            reason = cell.reason if cell is not None else MISSING_REASON
            if state == "complete":  # complete but no overall score in its metrics
                state, reason = "corrupt", "metrics.json has no numeric 'overall' score"
            notes.append(f"{config} · {column}: {state} — {reason}")
            row.append(Cell(state, state=state, title=reason, note=len(notes)))
        done = scores[scores["sparse_config"] == config]
        row.append(
            _score_cell(done["score"].mean(), done["kept"].mean(), done["density"].mean(), False)
            if len(done)
            else Cell("-", state="missing")
        )
        rows.append(row)
    caption = f"score (0-100) · % of {baseline} kept · density"
    return Table(["config", *columns, "mean"], rows, notes=notes, caption=caption)


def _score_cell(score: float, kept: float, density: float, is_baseline: bool) -> Cell:
    parts = []
    if not is_baseline and _finite(kept):
        parts.append(f"{kept:.0f}% kept")
    if _finite(density):
        parts.append(f"density {density:.2f}")
    return Cell(
        f"{score:.1f}" if _finite(score) else "-",
        detail=" · ".join(parts),
        state="complete",
    )


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def model_sections(
    cells: list[JobCell],
    table: pd.DataFrame,
    layers: pd.DataFrame,
    baseline: str,
) -> list[Block]:
    """Per model: its score grid, its kept heatmap and its per-layer profile."""
    blocks: list[Block] = []
    for model in sorted({c.model for c in cells}):
        blocks += [Heading(model), score_grid(cells, table, model, baseline)]
        for figure in (
            figures.kept_heatmap(table, model, baseline),
            figures.layer_profile(layers, model),
        ):
            if figure is not None:
                blocks.append(figure)
    return blocks
