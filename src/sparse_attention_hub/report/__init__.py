"""Tables (and later plots) of how much accuracy each sparse config keeps against dense."""

from sparse_attention_hub.report.plots import plot_kept_vs_density
from sparse_attention_hub.report.tables import kept_table, pivot_scores

__all__ = ["kept_table", "pivot_scores", "plot_kept_vs_density"]
