"""The report's plots (matplotlib, PNG), each with the frame of exactly what it draws.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state, no display needed).
Every function returns None when the tree has nothing to draw yet.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from matplotlib.figure import Figure as MplFigure

from sparse_attention_hub.executor.plan import sanitize
from sparse_attention_hub.report.document import Figure
from sparse_attention_hub.report.pareto import pareto_front

DPI = 100


def score_vs_density(table: pd.DataFrame) -> Figure | None:
    """Per benchmark: mean score vs mean density of each (model, config), the front drawn."""
    scored = table.dropna(subset=["score", "density"])
    points = (
        scored.groupby(["benchmark", "model", "sparse_config"])
        .agg(density=("density", "mean"), score=("score", "mean"), subsets=("subset", "nunique"))
        .reset_index()
    )
    if points.empty:
        return None
    # A config missing some of a benchmark's subsets is labelled "(k/n)": its mean is over fewer.
    points["of"] = points.groupby(["benchmark", "model"])["subsets"].transform("max")
    points["on_front"] = False
    for _, group in points.groupby(["benchmark", "model"]):
        front = pareto_front(list(group["density"]), list(group["score"]))
        points.loc[group.index, "on_front"] = front
    benchmarks = sorted(points["benchmark"].unique())
    columns = min(3, len(benchmarks))
    rows = math.ceil(len(benchmarks) / columns)
    figure = MplFigure(figsize=(5.2 * columns, 4.2 * rows), dpi=DPI)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    models = sorted(points["model"].unique())
    for ax, benchmark in zip(axes, benchmarks, strict=False):
        for index, model in enumerate(models):
            group = points[(points["benchmark"] == benchmark) & (points["model"] == model)]
            if group.empty:
                continue
            color = f"C{index % 10}"
            ax.scatter(group["density"], group["score"], color=color, s=36, label=model)
            front = group[group["on_front"]].sort_values("density")
            ax.step(front["density"], front["score"], where="post", color=color, alpha=0.6)
            for _, row in group.iterrows():
                partial = f" ({row['subsets']}/{row['of']})" if row["subsets"] < row["of"] else ""
                ax.annotate(
                    f"{row['sparse_config']}{partial}",
                    (row["density"], row["score"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                )
        ax.set_title(benchmark, fontsize=10)
        ax.set_xlabel("density (fraction of keys attended)")
        ax.set_ylabel("score (0-100)")
        ax.set_xlim(0, 1.08)
        ax.set_ylim(-5, 108)
        ax.grid(alpha=0.3)
        if len(models) > 1:
            ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(benchmarks) :]:
        ax.set_visible(False)
    return Figure(
        "score_vs_density",
        "Score vs density",
        "Mean over each benchmark's subsets ((k/n): the config has only k of the n subsets); "
        "the line joins the configs on the Pareto front (no other config reads fewer keys and "
        "scores higher).",
        png_bytes(figure),
        points,
    )


def kept_heatmap(table: pd.DataFrame, model: str, baseline: str) -> Figure | None:
    """% of the baseline's score kept, config x benchmark/subset, for one model."""
    rows = table[(table["model"] == model) & table["kept"].notna()]
    if rows.empty:
        return None
    wide = rows.assign(column=rows["benchmark"] + "/" + rows["subset"]).pivot_table(
        index="sparse_config", columns="column", values="kept", aggfunc="first"
    )
    height, width = wide.shape
    figure = MplFigure(figsize=(max(4.5, 1.1 * width + 3), max(2.2, 0.45 * height + 1.6)), dpi=DPI)
    ax = figure.subplots()
    image = ax.imshow(wide.to_numpy(dtype=float), cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(width), list(wide.columns), rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(height), list(wide.index), fontsize=8)
    for (i, j), value in pd.DataFrame(wide.to_numpy(dtype=float)).stack().dropna().items():
        ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8)
    figure.colorbar(image, ax=ax, label=f"% of {baseline} kept")
    ax.set_title(model, fontsize=10)
    figure.tight_layout()
    return Figure(
        f"kept_heatmap_{sanitize(model)}",
        f"Share of {baseline} kept — {model}",
        f"Score as % of the {baseline} score on the same subset (blank: no ratio).",
        png_bytes(figure),
        wide.reset_index(),
    )


def layer_profile(layers: pd.DataFrame, model: str) -> Figure | None:
    """Density per layer (and output error when recorded) for each config of one model."""
    rows = layers[layers["model"] == model]
    if rows.empty:
        return None
    has_error = bool(rows["output_error"].notna().any())
    figure = MplFigure(figsize=(10.4 if has_error else 6.2, 3.8), dpi=DPI)
    axes = figure.subplots(1, 2 if has_error else 1, squeeze=False).ravel()
    for index, (config, group) in enumerate(rows.groupby("sparse_config")):
        style = {"marker": "o", "markersize": 3, "color": f"C{index % 10}", "label": config}
        axes[0].plot(group["layer"], group["density"], **style)
        if has_error and group["output_error"].notna().any():
            axes[1].plot(group["layer"], group["output_error"], **style)
    axes[0].set_ylabel("density")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7)
    if has_error:
        axes[1].set_ylabel("relative output error vs dense")
    for ax in axes:
        ax.set_xlabel("layer")
        ax.grid(alpha=0.3)
    figure.suptitle(model, fontsize=10)
    figure.tight_layout()
    return Figure(
        f"layers_{sanitize(model)}",
        f"Per-layer density — {model}",
        "Mean over every recorded attention call (attention_stats.jsonl) of each config's jobs.",
        png_bytes(figure),
        rows.reset_index(drop=True),
    )


def timing(times: pd.DataFrame) -> Figure | None:
    """Seconds per job (split by phase when the job recorded it) and seconds per sample."""
    rows = times.dropna(subset=["duration_s"]).reset_index(drop=True)
    if rows.empty:
        return None
    labels = rows["sparse_config"] + " · " + rows["benchmark"] + "/" + rows["subset"]
    if rows["model"].nunique() > 1:
        labels = rows["model"] + " · " + labels
    figure = MplFigure(figsize=(11, max(2.6, 0.32 * len(rows) + 1.4)), dpi=DPI)
    jobs, samples = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    positions = list(range(len(rows)))
    left = pd.Series(0.0, index=rows.index)
    for phase in ("context_prefill_s", "question_prefill_s", "decode_s"):
        values = rows[phase].fillna(0.0)
        if values.any():
            jobs.barh(positions, values, left=left, label=phase.removesuffix("_s"))
            left = left + values
    jobs.barh(positions, (rows["duration_s"] - left).clip(lower=0), left=left, label="other")
    jobs.set_yticks(positions, list(labels), fontsize=7)
    jobs.set_xlabel("seconds per job")
    jobs.legend(fontsize=7)
    samples.barh(positions, rows["s_per_sample"].fillna(0.0), color="C4")
    samples.set_yticks(positions, [""] * len(rows))
    samples.set_xlabel("seconds per sample")
    for ax in (jobs, samples):
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return Figure(
        "timing",
        "Time per job and per sample",
        "Wall time of each complete job (manifest), split into prefill and decode where the job "
        "recorded a timing block; per sample = job time / answers saved.",
        png_bytes(figure),
        rows,
    )


def png_bytes(figure: MplFigure) -> bytes:
    """The figure as PNG bytes (tight bounding box)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()
