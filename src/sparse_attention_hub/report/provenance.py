"""Where the numbers come from: versions, commit, model sources, kwargs and hardware.

Read from each job's `config.json` and `manifest.json` (what the job itself recorded), plus the
last run's `execution_summary.json`. A value that differs between jobs is listed with the jobs
that have each value, so a mixed tree is visible rather than averaged away.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sparse_attention_hub.report.document import Block, Cell, Heading, Table
from sparse_attention_hub.report.tree import JobCell
from sparse_attention_hub.result_files import SUMMARY

NOT_RECORDED = "not recorded"


def provenance_blocks(base: Path, cells: list[JobCell]) -> list[Block]:
    """The provenance section: run, software, models, sparse configs, kwargs."""
    jobs = [c for c in cells if c.config or c.manifest]
    blocks: list[Block] = [Heading("Provenance")]
    blocks.append(_pairs("Run", _run_facts(base, jobs)))
    versions: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for cell in jobs:
        for package, version in (cell.config.get("versions") or {}).items():
            versions[package][str(version)].append(cell.job_id)
    blocks.append(
        _pairs(
            "Software", [(name, _values(by_value)) for name, by_value in sorted(versions.items())]
        )
    )
    models = defaultdict(list)
    for cell in jobs:
        adapter = cell.config.get("adapter") or {}
        described = ", ".join(
            f"{key}={adapter[key]}"
            for key in ("source", "source_kind", "dtype", "attn_implementation")
            if adapter.get(key)
        )
        models[cell.model].append(described or NOT_RECORDED)
    blocks.append(_pairs("Models", [(m, _distinct(v)) for m, v in sorted(models.items())]))
    configs = defaultdict(list)
    for cell in jobs:
        sparse = (cell.config.get("job") or {}).get("sparse_config", "?")
        configs[cell.sparse_config].append(describe_config(sparse))
    blocks.append(_pairs("Sparse configs", [(c, _distinct(v)) for c, v in sorted(configs.items())]))
    kwargs = []
    for key in ("generation_kwargs", "request_kwargs", "benchmark_options"):
        by_value: dict[str, list[str]] = defaultdict(list)
        for cell in jobs:
            if key in cell.config:
                by_value[_json(cell.config[key])].append(cell.job_id)
        kwargs.append((key, _values(by_value)))
    blocks.append(_pairs("Generation and request kwargs", kwargs))
    return blocks


def describe_config(config: Mapping[str, Any] | str | None) -> str:
    """`sink(sink_size=4) + local(window_size=0.1)`; None is dense attention."""
    if config is None:
        return "dense attention"
    if not isinstance(config, Mapping):
        return str(config)
    parts = []
    for masker in config.get("masker_configs", []):
        params = ", ".join(f"{k}={v}" for k, v in masker.items() if k != "type")
        parts.append(f"{masker.get('type')}({params})")
    extra = ", ".join(f"{k}={v}" for k, v in config.items() if k != "masker_configs" and v)
    return " + ".join(parts) + (f"  [{extra}]" if extra else "")


def _run_facts(base: Path, jobs: list[JobCell]) -> list[tuple[str, str]]:
    facts = [("result dir", str(base.resolve()))]
    try:
        summary = json.loads((base / SUMMARY).read_text(encoding="utf-8"))
        counts = ", ".join(f"{v} {k}" for k, v in summary.get("counts", {}).items())
        wall = summary.get("wall_s")
        facts.append(
            (
                "last run",
                f"{summary.get('run_id', '?')}: {counts}"
                + (f" in {wall:.0f} s" if isinstance(wall, (int, float)) else "")
                + (" (interrupted)" if summary.get("interrupted") else ""),
            )
        )
    except (OSError, ValueError, AttributeError):
        facts.append(("last run", "no execution_summary.json (a run in progress, or none)"))
    commits: dict[str, list[str]] = defaultdict(list)
    hardware: dict[str, list[str]] = defaultdict(list)
    for cell in jobs:
        commit = cell.config.get("git_commit") or (cell.config.get("versions") or {}).get("git")
        commits[str(commit or NOT_RECORDED)].append(cell.job_id)
        device = cell.manifest.get("device") or (cell.config.get("job") or {}).get("device")
        host = cell.config.get("hardware") or cell.manifest.get("hardware")
        label = str(device or NOT_RECORDED) + (f" ({_json(host)})" if host else "")
        hardware[label].append(cell.job_id)
    finished = sorted(str(c.manifest["finished_at"]) for c in jobs if c.manifest.get("finished_at"))
    if finished:
        facts.append(("jobs finished", f"{finished[0]} … {finished[-1]}"))
    facts.append(("git commit", _values(commits)))
    facts.append(("hardware (job devices)", _values(hardware)))
    return facts


def _pairs(caption: str, pairs: Iterable[tuple[str, str]]) -> Table:
    return Table(
        ["", ""], [[Cell(key, state="key"), Cell(value)] for key, value in pairs], caption=caption
    )


def _values(by_value: Mapping[str, list[str]]) -> str:
    """One value as is; several as `value (n jobs)` each, so differences stand out."""
    if not by_value:
        return NOT_RECORDED
    if len(by_value) == 1:
        return next(iter(by_value))
    return "; ".join(f"{value} ({len(jobs)} jobs)" for value, jobs in sorted(by_value.items()))


def _distinct(values: list[str]) -> str:
    return "; ".join(sorted(set(values)))


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
