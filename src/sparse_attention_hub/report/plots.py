"""The accuracy-vs-density picture: one point per (model, sparse config), mean over subsets.

x = mean fraction of keys attended (density), y = mean share of the dense score kept (%). The
upper-left corner is where a method keeps accuracy while reading few keys.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sparse_attention_hub.errors import ConfigError


def plot_kept_vs_density(table: pd.DataFrame, path: str | Path, baseline: str = "dense") -> Path:
    """Write the scatter plot of `kept_table(...)` to `path` (format from its suffix)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    points = (
        table.groupby(["model", "sparse_config"])[["density", "kept"]]
        .mean()
        .dropna(subset=["kept"])
        .reset_index()
    )
    if points.empty:
        raise ConfigError(
            f"nothing to plot: no job has a score relative to the baseline {baseline!r}"
        )
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for model, rows in points.groupby("model"):
        axes.scatter(rows["density"], rows["kept"], label=str(model), s=36)
        for _, row in rows.iterrows():
            axes.annotate(
                str(row["sparse_config"]),
                (row["density"], row["kept"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    axes.set_xlabel("density (fraction of keys attended)")
    axes.set_ylabel(f"score kept vs {baseline} (%)")
    axes.set_xlim(0, 1.1)
    axes.set_ylim(-5, max(110.0, float(points["kept"].max()) + 10))
    axes.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=150)
    plt.close(figure)
    return out
