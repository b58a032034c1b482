"""The Ray backend's actors, plain classes that `ray.py` makes remote once ray is imported.

`SlotActor` is one slot: a `Worker` holding one model, running one bundle at a time in
node-local staging dirs (`staging.py`) and passing every event on to the `Inbox`, an actor on the
driver's node, waiting each time until the inbox holds it. Importing this module imports no ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from sparse_attention_hub.executor.backends.staging import StagedDir
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.failures import failure_from_exception
from sparse_attention_hub.executor.plan import Job


# ----- the bundle a backend carries -----------------------------------------------------------
# A bundle, opaque but for this: each of its jobs has a result dir to stage.
def jobs_of(bundle: Bundle) -> list[Job]:
    return list(bundle.jobs)


def with_result_dirs(bundle: Bundle, dirs: dict[str, Path]) -> Bundle:
    """The same bundle with each job's result dir replaced by `dirs[job_id]`."""
    return replace(bundle, jobs=tuple(replace(j, result_dir=dirs[j.job_id]) for j in bundle.jobs))


class Inbox:
    """On the driver's node: holds what actors send until the driver takes it."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.arrived = asyncio.Event()
        self.drains = 0

    async def put(self, item: Any) -> None:
        self.items.append(item)
        self.arrived.set()

    async def take(self, timeout: float, drains_seen: int) -> list[Any]:
        """Everything held, waiting up to `timeout` seconds for the first item.

        A drain issued after this take (`drains_seen` counts those before it) ends the wait,
        even when it runs first (an async actor may start calls out of order).
        """
        if not self.items and self.drains <= drains_seen:
            self.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout)
        items, self.items = self.items, []
        return items

    async def drain(self, number: int) -> list[Any]:
        """Everything held now; a pending take() returns at once (with what it had)."""
        items, self.items = self.items, []
        self.drains = max(self.drains, number)
        self.arrived.set()
        return items


class SlotActor:
    """One slot: a Worker holding one model, running one bundle at a time in staging dirs."""

    def __init__(
        self, worker_id: int, generation: int, inbox: Any, gpu_memory_fraction: float | None
    ) -> None:
        import ray

        with contextlib.suppress(ValueError):  # only the main thread may; the driver decides
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        logging.basicConfig(
            level=logging.WARNING,
            format=f"[worker {worker_id}] %(levelname)s %(name)s: %(message)s",
        )
        gpus = ray.get_gpu_ids()
        node = f"{ray.util.get_node_ip_address()}:{ray.get_runtime_context().get_node_id()[:8]}"
        self.device = "cuda:0" if gpus else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES for the actor
        self.label = f"ray:{node}:" + (f"gpu{gpus[0]}" if gpus else "cpu")  # for the records
        if gpus and gpu_memory_fraction is not None:
            import torch

            torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction, 0)
        from sparse_attention_hub.benchmark.registry import list_benchmarks
        from sparse_attention_hub.executor.worker import Worker

        list_benchmarks()  # import every benchmark module now, not inside the first job's timeout
        self.tag = (worker_id, generation)
        self.inbox = inbox
        self.root = Path(tempfile.mkdtemp(prefix=f"sah-ray-{worker_id}-"))
        self.staged: dict[str, tuple[str, StagedDir]] = {}  # job id -> (driver dir, staging)
        self.worker = Worker(worker_id, self.device, notify=self._notify, label=self.label)

    def _send(self, kind: str, payload: Any) -> None:
        import ray

        ray.get(self.inbox.put.remote((*self.tag, kind, payload)))  # held by the inbox: safe

    def _notify(self, kind: str, payload: dict[str, Any]) -> None:
        """Pass the Worker's events on, each job's files ahead of them: what changed after every
        saved answer, everything (manifest last) before the job's `finished` or `raised`."""
        staged = self.staged.get(str(payload.get("job_id")))
        if staged is not None and kind in ("answered", "finished", "raised"):
            driver_dir, stage = staged
            ops = stage.changes(final=kind != "answered")
            if ops:
                self._send("sync", (driver_dir, ops))
        if kind != "answered":
            self._send(kind, payload)

    def ready(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": self.label}

    def run(self, bundle: Bundle, seeds: dict[str, dict[str, bytes]]) -> None:
        """Run `bundle` in staging dirs; every event, each job's end included, goes through
        the inbox (`Worker.execute` reports through `notify` and never raises)."""
        try:
            self.staged = {
                j.job_id: (str(j.result_dir), StagedDir(self.root / j.job_id, seeds[j.job_id]))
                for j in jobs_of(bundle)
            }
        except Exception as exc:  # staging failed (a full disk): its jobs failed, not the actor
            failure = failure_from_exception(exc).to_dict()
            for job in jobs_of(bundle):
                self._send("raised", {"job_id": job.job_id, "failure": failure})
            return
        try:
            self.worker.execute(
                with_result_dirs(bundle, {k: v[1].dir for k, v in self.staged.items()})
            )
        finally:
            for _, stage in self.staged.values():
                stage.remove()
            self.staged = {}

    def close(self) -> None:
        self.worker.release_model()
        shutil.rmtree(self.root, ignore_errors=True)
