"""`sah report DIR`: read the tree, write DIR/report/ (index.html, report.md, figures/, data/).

Everything comes from the job dirs on disk, so the report works on a tree that is still running
or was interrupted, and needs no experiment file. It writes only under DIR/report/ (never through
a symlink) and replaces its own earlier outputs there.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.files import write_bytes_atomic, write_text_atomic
from sparse_attention_hub.report import figures
from sparse_attention_hub.report.compare import compare_blocks, compare_frame
from sparse_attention_hub.report.document import Block, Figure, Heading
from sparse_attention_hub.report.html import render_html
from sparse_attention_hub.report.markdown import render_markdown
from sparse_attention_hub.report.measures import layer_frame, timing_frame
from sparse_attention_hub.report.provenance import provenance_blocks
from sparse_attention_hub.report.sections import model_sections, overview
from sparse_attention_hub.report.tables import kept_table
from sparse_attention_hub.report.tree import REPORT_DIR, JobCell, scan_tree, tidy_frame

logger = logging.getLogger(__name__)

INDEX, MARKDOWN, FIGURES, DATA = "index.html", "report.md", "figures", "data"


def load_tree(
    result_dir: str | Path, baseline: str = "dense"
) -> tuple[list[JobCell], pd.DataFrame]:
    """The job cells of a result dir and their kept table (score, density, kept per job)."""
    base = Path(result_dir)
    if not base.is_dir():
        raise ConfigError(f"{base} is not a directory (give a result dir, e.g. results/quickstart)")
    cells = scan_tree(base)
    if not cells:
        raise ConfigError(f"{base} has no job dirs yet (not a result dir, or nothing has run)")
    return cells, kept_table(tidy_frame(cells), baseline, strict=False)


def build_report(
    result_dir: str | Path, baseline: str = "dense", compare_with: str | Path | None = None
) -> Path:
    """Write the report of `result_dir` (compared with a second dir when given); its index.html."""
    base = Path(result_dir)
    cells, table = load_tree(base, baseline)
    comparison: list[Block] = []
    if compare_with is not None:
        _, other = load_tree(compare_with, baseline)
        comparison = compare_blocks(compare_frame(table, other), str(base), str(compare_with))
    blocks: list[Block] = [*overview(cells, baseline), Heading("Scores by model")]
    blocks += model_sections(cells, table, layer_frame(cells), baseline)
    across = [figures.score_vs_density(table), figures.timing(timing_frame(cells))]
    blocks += [Heading("Across models and configs")] + [f for f in across if f is not None]
    blocks += comparison + provenance_blocks(base, cells)

    out = _report_dir(base)
    title = f"Sparse attention report: {base.resolve().name}"
    subtitle = f"Built from the job dirs under {base.resolve()}; baseline {baseline!r}."
    written = {out / INDEX, out / MARKDOWN}
    for figure in (b for b in blocks if isinstance(b, Figure)):
        written |= _write_figure(out, figure)
    written.add(_write_csv(out / DATA / "scores.csv", table))
    jobs = pd.DataFrame([_job_row(c) for c in cells])
    written.add(_write_csv(out / DATA / "jobs.csv", jobs))
    _remove_old_outputs(out, written)
    write_text_atomic(out / MARKDOWN, render_markdown(title, subtitle, blocks))
    write_text_atomic(out / INDEX, render_html(title, subtitle, blocks))
    logger.info("report written to %s", out / INDEX)
    return out / INDEX


def _report_dir(base: Path) -> Path:
    out = base / REPORT_DIR
    for path in (out, out / FIGURES, out / DATA):
        if path.is_symlink():
            raise ConfigError(f"{path} is a symlink; the report writes only inside the result dir")
    return out


def _write_figure(out: Path, figure: Figure) -> set[Path]:
    png = out / FIGURES / f"{figure.name}.png"
    write_bytes_atomic(png, figure.png, durable=False)
    return {png, _write_csv(out / DATA / f"{figure.name}.csv", figure.data)}


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    write_text_atomic(path, frame.to_csv(index=False), durable=False)
    return path


def _job_row(cell: JobCell) -> dict[str, object]:
    row = asdict(cell)
    for bulky in ("manifest", "config", "metrics"):
        row.pop(bulky)
    row["path"] = str(cell.path) if cell.path else ""
    return row


def _remove_old_outputs(out: Path, keep: set[Path]) -> None:
    """Figures and tables of an earlier build that this build did not write again."""
    for folder, suffix in ((out / FIGURES, ".png"), (out / DATA, ".csv")):
        if folder.is_dir():
            for path in folder.iterdir():
                if path.suffix == suffix and path.is_file() and path not in keep:
                    path.unlink()
