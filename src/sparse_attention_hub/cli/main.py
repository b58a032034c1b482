"""`sah`: thin commands over the library — parse, call, print.

sah run experiment.yaml [--dry-run] [--gpus 0,1] [--max-concurrent-runs 4] [--debug] ...
sah status results/quickstart
sah report results/quickstart [other_dir] [--baseline dense] [--csv table.csv] [--open]
sah list benchmarks | presets
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.result_files import RESULTS_CSV, STATUS, SUMMARY

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
console = Console()


def say(text: str) -> None:
    """Plain text: no markup (job ids and errors may contain brackets), no wrapping."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def parse_gpus(text: str) -> list[int]:
    """`0,1` -> [0, 1]; `cpu` or `` -> [] (CPU workers)."""
    if text.strip().lower() in ("", "cpu", "none"):
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--gpus takes comma-separated ids like 0,1 or 'cpu', got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sah", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log INFO messages")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) an experiment matrix from a YAML file")
    run.add_argument("experiment", type=Path)
    run.add_argument(
        "--dry-run", action="store_true", help="print the plan and the state of each job"
    )
    run.add_argument(
        "--gpus", type=parse_gpus, default=None, help="GPU ids, e.g. 0,1 ('cpu' for none)"
    )
    run.add_argument("--max-concurrent-runs", type=int, default=None, help="number of workers")
    run.add_argument("--max-retries", type=int, default=None)
    run.add_argument(
        "--job-timeout", type=float, default=None, help="seconds per job before it is killed"
    )
    run.add_argument(
        "--result-dir", type=Path, default=None, help="overrides result_dir of the file"
    )
    run.add_argument(
        "--rerun-failed", action="store_true", help="run jobs that failed in an earlier run"
    )
    run.add_argument(
        "--rerun-stale",
        action="store_true",
        help="re-run (overwrite) jobs whose parameters changed",
    )
    run.add_argument("--debug", action="store_true", help="run jobs in this process (pdb works)")
    run.add_argument(
        "--backend", choices=["local", "debug", "ray"], default=None, help="how jobs run"
    )
    run.add_argument(
        "--ray-address", default=None, help="Ray cluster to use: auto, or host:port (--backend ray)"
    )
    run.add_argument("--no-progress", action="store_true", help="no live progress display")

    status = commands.add_parser("status", help="summarise a result dir")
    status.add_argument("result_dir", type=Path)

    report = commands.add_parser(
        "report", help="scores, plots and provenance: prints a table, writes DIR/report/"
    )
    report.add_argument("result_dir", type=Path)
    report.add_argument(
        "other", type=Path, nargs="?", default=None, help="a second result dir to compare with"
    )
    report.add_argument("--compare", type=Path, default=None, help="same as the second dir")
    report.add_argument("--open", action="store_true", help="print the page's file:// address")
    report.add_argument("--baseline", default="dense", help="sparse config name to compare against")
    report.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    report.add_argument(
        "--plot", type=Path, default=None, help="also plot score kept vs density (e.g. kept.png)"
    )

    listing = commands.add_parser("list", help="list benchmarks or sparse-attention presets")
    listing.add_argument("what", choices=["benchmarks", "presets"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "status":
            return cmd_status(args.result_dir)
        if args.command == "report":
            return cmd_report(args)
        return cmd_list(args.what)
    except ConfigError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_CONFIG


def cmd_run(args: argparse.Namespace) -> int:
    from sparse_attention_hub.executor import BenchmarkExecutor, load_spec
    from sparse_attention_hub.executor.plan import plan_warnings

    spec = load_spec(args.experiment)
    executor = BenchmarkExecutor.from_spec(
        spec,
        gpu_ids=args.gpus,
        max_concurrent_runs=args.max_concurrent_runs,
        max_retries=args.max_retries,
        job_timeout_s=args.job_timeout,
        base_result_dir=args.result_dir,
        backend="debug" if args.debug else args.backend,
        ray_address=args.ray_address,
        rerun_failed=args.rerun_failed,
        rerun_stale=args.rerun_stale,
        progress=False if args.no_progress else None,
    )
    if args.dry_run:
        jobs = executor.plan(spec)
        for warning in plan_warnings(spec):
            say(f"warning: {warning}")
        run_ids = {j.job_id for j in executor.to_run(jobs)}
        for job in jobs:
            why = f"  ({job.stale_reason()})" if job.state.value == "stale" else ""
            why = f"  ({job.problem})" if job.problem else why
            say(
                f"{job.state.value:<9} {'run' if job.job_id in run_ids else '-':<4} {job.job_id}{why}"
            )
        states = Counter(j.state.value for j in jobs)
        summary = ", ".join(
            f"{states.get(s, 0)} {s}"
            for s in ("complete", "stale", "corrupt", "pending", "failed")
            if s != "corrupt" or states.get(s)
        )
        say(f"{len(jobs)} jobs: {summary}; would run {len(run_ids)}")
        return EXIT_OK
    results = executor.run(spec)
    counts = results.counts()
    say(
        f"{counts['planned']} jobs: {counts.get('complete', 0)} complete, {counts.get('failed', 0)} failed, "
        f"{counts.get('stale', 0)} stale, "
        + (f"{counts['corrupt']} corrupt, " if counts.get("corrupt") else "")
        + f"{counts.get('pending', 0)} pending "
        f"({counts['ran']} ran in {results.wall_s:.1f}s) -> {results.result_dir}"
    )
    for record in results.failed:
        say(f"  failed {record.job_id}: [{record.category}] {record.error}")
    if results.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if results.failed else EXIT_OK


def read_run_file(path: Path) -> dict[str, Any] | None:
    """A run file (status.json, execution_summary.json) or None; ConfigError naming what is wrong."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot be read as JSON ({reason}); a run rewrites it") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a {type(data).__name__}, expected a JSON object")
    return data


def cmd_status(result_dir: Path) -> int:
    files = {name: result_dir / name for name in (STATUS, SUMMARY)}
    found = {name: data for name, path in files.items() if (data := read_run_file(path))}
    if not found:
        raise ConfigError(
            f"{result_dir} has no status.json or execution_summary.json (not a result dir?)"
        )
    for name, data in found.items():
        try:
            show_status(data) if name == STATUS else show_summary(data)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{files[name]}: not the shape `sah run` writes ({type(exc).__name__}: {exc})"
            ) from None
    results_csv = result_dir / RESULTS_CSV
    if results_csv.exists():
        with open(results_csv, "rb") as handle:
            rows = max(0, sum(1 for _ in handle) - 1)
        say(f"results.csv: {rows} rows")
    return EXIT_OK


def show_status(status: dict[str, Any]) -> None:
    counts = status.get("counts", {})
    done = "interrupted" if status.get("interrupted") else f"updated {status.get('updated_at')}"
    say(
        f"run {status.get('run_id')} ({done}): {status.get('total')} jobs — "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    for worker in status.get("workers", []):
        say(f"  worker {worker['worker']} [{worker['device']}]: {worker.get('job') or 'idle'}")


def show_summary(summary: dict[str, Any]) -> None:
    counts = summary.get("counts", {})
    say(
        f"last run {summary.get('run_id')}: "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f" in {float(summary.get('wall_s', 0)):.1f}s"
    )
    for failure in summary.get("failures", []):
        say(f"  failed {failure['job_id']}: [{failure['category']}] {failure['error']}")
    for job in summary.get("jobs", []):
        if job["state"] == "stale":
            why = job.get("error") or "parameters changed"
            say(f"  stale {job['job_id']} ({why}; --rerun-stale replaces it)")
        elif job["state"] == "corrupt":
            say(f"  corrupt {job['job_id']} ({job.get('error')}; the next run resumes it)")
    for job_id, problem in summary.get("corrupt_at_start", {}).items():
        say(f"  was corrupt at start: {job_id} ({problem})")


def cmd_report(args: argparse.Namespace) -> int:
    from sparse_attention_hub.report import (
        build_report,
        load_tree,
        pivot_scores,
        plot_kept_vs_density,
    )

    if args.other is not None and args.compare is not None:
        raise ConfigError("give the second result dir once: as an argument or with --compare")
    compare = args.other if args.other is not None else args.compare
    cells, table = load_tree(args.result_dir, args.baseline)
    if args.csv is not None:
        table.to_csv(args.csv, index=False)
    scores, kept = pivot_scores(table, "score"), pivot_scores(table, "kept")
    density = table.groupby(["model", "sparse_config"])["density"].mean()
    for model in scores.index.get_level_values("model").unique():
        configs = list(scores.loc[model].index)
        view = Table("benchmark/subset", *configs, title=model, box=None)
        for column in scores.columns:
            cells_text = [
                _cell(scores.at[(model, c), column], kept.at[(model, c), column]) for c in configs
            ]
            view.add_row("mean" if column == "mean" else column, *cells_text)
        view.add_row("density", *[_number(density.get((model, c))) for c in configs])
        console.print(view)
    say(
        f"score 0-100; in brackets the share of the {args.baseline!r} score kept on the same subset"
    )
    for cell in cells:
        if cell.state != "complete":
            say(f"  {cell.state} {cell.job_id}: {cell.reason}")
    if args.plot is not None:
        say(f"plot: {plot_kept_vs_density(table, args.plot, args.baseline)}")
    index = build_report(args.result_dir, args.baseline, compare)
    say(f"report: {index}")
    if args.open:
        say(index.resolve().as_uri())
    return EXIT_OK


def _number(value: Any, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _cell(score: Any, kept: Any) -> str:
    text = _number(score)
    return text if kept is None or kept != kept else f"{text} ({kept:.0f}%)"


def cmd_list(what: str) -> int:
    if what == "benchmarks":
        from sparse_attention_hub.benchmark import create_benchmark_instance, list_benchmarks

        table = Table("benchmark", "subset", "metric", box=None)
        for name, subsets in list_benchmarks().items():
            try:
                metrics = create_benchmark_instance(name).subset_metrics()
            except Exception:  # a benchmark that needs options to build still lists its subsets
                metrics = {}
            for i, subset in enumerate(subsets):
                table.add_row(name if i == 0 else "", subset, metrics.get(subset, "?"))
        console.print(table)
        return EXIT_OK
    from sparse_attention_hub.report.provenance import describe_config
    from sparse_attention_hub.sparse_attention import config_to_dict, get_preset, list_presets

    table = Table("preset", "maskers", box=None)
    for name in list_presets():
        config = get_preset(name)
        table.add_row(name, describe_config(config_to_dict(config) if config else None))
    console.print(table)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
