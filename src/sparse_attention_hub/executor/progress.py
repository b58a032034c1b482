"""Live records of a run: `events.jsonl`, `status.json` (rewritten atomically) and a rich display.

The scheduler hands a status snapshot after every change; this module only writes and draws it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparse_attention_hub.executor.worker import now_iso
from sparse_attention_hub.files import write_json_atomic
from sparse_attention_hub.result_files import EVENTS, STATUS


class RunRecorder:
    """Appends events and rewrites status.json; draws progress when `display` is on."""

    def __init__(
        self, base: Path, run_id: str, display: bool = False, min_interval_s: float = 0.25
    ) -> None:
        self.base = base
        self.run_id = run_id
        self.min_interval_s = min_interval_s
        base.mkdir(parents=True, exist_ok=True)
        self._events = open(base / EVENTS, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._last_write: float | None = None  # None: the first status is always written
        self._snapshot: dict[str, Any] = {}
        self._display = ProgressDisplay() if display else None

    def event(self, kind: str, **fields: Any) -> None:
        record = {
            "time": now_iso(),
            "t": time.time(),
            "run_id": self.run_id,
            "event": kind,
            **fields,
        }
        self._events.write(json.dumps(record, default=str) + "\n")
        self._events.flush()

    def status(self, snapshot: dict[str, Any], force: bool = False) -> None:
        self._snapshot = snapshot
        if self._display is not None:
            self._display.update(snapshot)
        now = time.monotonic()
        if force or self._last_write is None or now - self._last_write >= self.min_interval_s:
            write_json_atomic(
                self.base / STATUS,
                {"run_id": self.run_id, "updated_at": now_iso(), **snapshot},
                durable=False,  # rewritten several times a second: no fsync
            )
            self._last_write = now

    def close(self) -> None:
        if self._snapshot:
            self.status(self._snapshot, force=True)
        self._events.close()
        if self._display is not None:
            self._display.stop()


class ProgressDisplay:
    """An overall bar with ETA and one line per worker (its device, model and job)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]jobs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
            TextColumn("{task.fields[note]}"),
        )
        self.task = self.progress.add_task("jobs", total=None, eta="", note="")
        self.workers = Table.grid(padding=(0, 2))
        self.live = Live(
            Group(self.progress, self.workers), console=Console(stderr=True), refresh_per_second=4
        )
        self.live.start()

    def update(self, snapshot: dict[str, Any]) -> None:
        counts = snapshot.get("counts", {})
        eta = snapshot.get("eta_s")
        self.progress.update(
            self.task,
            total=snapshot.get("total"),
            completed=counts.get("complete", 0) + counts.get("failed", 0),
            eta=f"ETA {eta:.0f}s" if eta is not None else "",
            note=f"failed {counts['failed']}" if counts.get("failed") else "",
        )
        table = Table.grid(padding=(0, 2))
        for worker in snapshot.get("workers", []):
            table.add_row(
                f"worker {worker['worker']}",
                str(worker.get("device", "")),
                str(worker.get("job") or "idle"),
                f"{worker['running_s']:.0f}s" if worker.get("running_s") is not None else "",
            )
        self.workers = table
        self.live.update(Group(self.progress, table))

    def stop(self) -> None:
        self.live.stop()
