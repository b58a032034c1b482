"""Tables, plots and the HTML/Markdown report of how much accuracy each sparse config keeps."""

from sparse_attention_hub.report.build import build_report, load_tree
from sparse_attention_hub.report.plots import plot_kept_vs_density
from sparse_attention_hub.report.tables import kept_table, pivot_scores
from sparse_attention_hub.report.tree import JobCell, scan_tree

__all__ = [
    "JobCell",
    "build_report",
    "kept_table",
    "load_tree",
    "pivot_scores",
    "plot_kept_vs_density",
    "scan_tree",
]
