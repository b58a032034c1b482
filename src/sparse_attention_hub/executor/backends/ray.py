"""The Ray backend: one long-lived actor per slot, on whatever nodes a Ray cluster has.

It implements the same five-method protocol as the local backend, so planning, model affinity,
retries, timeouts, locks and records stay in the one scheduler. Slots come from the cluster:
`max_concurrent_runs` actors (at most what the cluster can place), each holding one model and
reserving `1 / runs_per_gpu` of a GPU, or one CPU on a cluster without GPUs.

No shared filesystem is needed: this process (the driver) owns the result tree. An actor runs a
job in a node-local staging dir seeded with the job's files (`staging.py`); after each saved
answer it sends what changed to a small inbox actor on the driver's node and waits for the
inbox to hold it, so an actor that dies loses no saved answer. The driver applies those changes
to the real job dir as they arrive, and the job's final files (manifest last) with its result.
See docs/cluster.md for starting a cluster and what each node needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.backends import BACKENDS, BackendEvent, Slot
from sparse_attention_hub.executor.backends.local import MAX_FAILED_STARTS, WorkerStartError
from sparse_attention_hub.executor.backends.staging import StagedDir, apply, snapshot
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.failures import failure_from_exception
from sparse_attention_hub.executor.plan import Job

logger = logging.getLogger(__name__)

EXTRA_HINT = "install it with `pip install sparse-attention-hub[ray]`"
GRACE_S = 3.0
INBOX_POLL_S = 1.0  # an idle take() returns after this long, so the driver re-checks its actors
WAITING_WARN_S = 60.0


def ray_problems() -> list[str]:
    """Why `backend: ray` cannot run here (checked when planning), or []."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return [f"execution.backend 'ray' needs the ray package: {EXTRA_HINT}"]
    return []


# ----- the bundle a backend carries -----------------------------------------------------------
# A bundle, opaque but for this: each of its jobs has a result dir to stage.
def jobs_of(bundle: Bundle) -> list[Job]:
    return list(bundle.jobs)


def with_result_dirs(bundle: Bundle, dirs: dict[str, Path]) -> Bundle:
    """The same bundle with each job's result dir replaced by `dirs[job_id]`."""
    return replace(bundle, jobs=tuple(replace(j, result_dir=dirs[j.job_id]) for j in bundle.jobs))


# ----- actors (class bodies are made remote once ray is imported) -----------------------------
class _Inbox:
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


class _SlotActor:
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
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


# ----- the driver side ------------------------------------------------------------------------
@dataclass
class _Actor:
    handle: Any
    generation: int
    ready_ref: Any | None
    run_ref: Any | None = None
    dirs: set[str] = field(default_factory=set)  # driver dirs of the bundle it runs


@BACKENDS.register("ray")
class RayBackend:
    def __init__(
        self,
        slots: list[Slot],
        ray_address: str | None = None,
        runs_per_gpu: int = 1,
        gpu_memory_fraction: float | None = None,
        **_: Any,
    ) -> None:
        problems = ray_problems()
        if problems:
            raise ConfigError(problems[0])
        import ray

        self._ray = ray
        self._owns_session = not ray.is_initialized()
        if self._owns_session and ray_address is None:
            # a new instance on this machine for this run ("local": never someone else's)
            ray.init(address="local", include_dashboard=False)
        elif self._owns_session:
            ray.init(address=ray_address)
        resources = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0.0))
        if gpus > 0:
            self._options: dict[str, Any] = {"num_gpus": 1.0 / runs_per_gpu, "num_cpus": 0}
            capacity, kind = int(gpus * runs_per_gpu + 1e-9), "gpu"
        else:
            self._options = {"num_cpus": 1}
            capacity, kind = int(resources.get("CPU", 0.0)), "cpu"
        wanted = len(slots)
        if capacity < 1:
            self._end_session()
            raise ConfigError(f"the Ray cluster has no GPU or CPU for an actor: {resources}")
        if capacity < wanted:
            logger.warning(
                "max_concurrent_runs %d: the Ray cluster holds %d %s actor(s); using %d",
                wanted,
                capacity,
                kind,
                capacity,
            )
        self.slots = [Slot(i, f"ray:{kind}") for i in range(min(wanted, capacity))]
        self.gpu_memory_fraction = gpu_memory_fraction
        self._actors: dict[int, _Actor] = {}
        self._generation = 0
        self._failed_starts = 0
        self._inbox: Any = None
        self._take_ref: Any = None
        self._drains = 0
        self._actor_class: Any = ray.remote(_SlotActor).options(
            max_restarts=0, max_task_retries=0, **self._options
        )
        self._waiting_since: float | None = None

    # ----- protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        inbox_class = ray.remote(_Inbox).options(num_cpus=0, scheduling_strategy=here)
        self._inbox = inbox_class.remote()
        self._take_ref = self._inbox.take.remote(INBOX_POLL_S, self._drains)
        for slot in self.slots:
            self._spawn(slot.worker)

    def _spawn(self, worker: int) -> None:
        self._generation += 1
        handle: Any = self._actor_class.remote(
            worker, self._generation, self._inbox, self.gpu_memory_fraction
        )
        self._actors[worker] = _Actor(handle, self._generation, handle.ready.remote())

    def submit(self, worker: int, bundle: Bundle) -> None:
        actor = self._actors[worker]
        jobs = jobs_of(bundle)
        seeds = {j.job_id: snapshot(j.result_dir) for j in jobs}
        actor.dirs = {str(j.result_dir) for j in jobs}
        actor.run_ref = actor.handle.run.remote(bundle, seeds)

    def wait(self, timeout: float) -> list[BackendEvent]:
        ray = self._ray
        refs = [self._take_ref] + [
            ref
            for a in self._actors.values()
            for ref in (a.ready_ref, a.run_ref)
            if ref is not None
        ]
        ray.wait(refs, num_returns=1, timeout=timeout)
        done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        events: list[BackendEvent] = []
        for worker, actor in list(self._actors.items()):  # ready first: it precedes the rest
            if actor.ready_ref in done:
                events += self._on_ready(worker, actor)
        ended = [(w, a) for w, a in self._actors.items() if a.run_ref in done]
        if self._take_ref in done or ended:
            events += self._take_inbox(flush=bool(ended))
        for worker, actor in ended:
            events += self._on_result(worker, actor)
        self._warn_if_stalled()
        return events

    def cancel(self, worker: int) -> None:
        self._kill(self._actors[worker])
        self._spawn(worker)

    def shutdown(self, force: bool = False) -> None:
        ray = self._ray
        closing = []
        if not force:
            closing = [
                a.handle.close.remote() for a in self._actors.values() if a.ready_ref is None
            ]
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=GRACE_S)
        for actor in self._actors.values():
            self._kill(actor)
        if self._inbox is not None:  # answers saved before the end (Ctrl-C) still reach the tree
            with contextlib.suppress(ray.exceptions.RayError):
                items = ray.get(self._inbox.drain.remote(self._drains + 1), timeout=GRACE_S)
                self._apply_items(items)
            ray.kill(self._inbox)
        self._actors.clear()
        self._end_session()

    # ----- events -----------------------------------------------------------------------------
    def _take_inbox(self, flush: bool) -> list[BackendEvent]:
        """The inbox's items in the order they arrived; `flush`: also everything sent so far.

        Actors wait for each send, so after a run ends (or its actor dies) a flush holds every
        item it sent: the drain's, plus those a pending take() had already picked up.
        """
        ray = self._ray
        items: list[Any] = []
        if flush:
            self._drains += 1
            drained = ray.get(self._inbox.drain.remote(self._drains))
            items = ray.get(self._take_ref) + drained
        else:
            items = ray.get(self._take_ref)
        self._take_ref = self._inbox.take.remote(INBOX_POLL_S, self._drains)
        return self._apply_items(items)

    def _apply_items(self, items: list[Any]) -> list[BackendEvent]:
        events = []
        for worker, generation, kind, payload in items:
            actor = self._actors.get(worker)
            if actor is None or actor.generation != generation:
                continue  # from an actor cancelled since: its job is someone else's now
            if kind == "sync":
                self._apply_sync(actor, payload)
            else:
                events.append(BackendEvent(worker, kind, payload))
        return events

    def _apply_sync(self, actor: _Actor, sync: tuple[str, Any]) -> None:
        driver_dir, ops = sync
        if driver_dir not in actor.dirs:  # only the dirs of the bundle it was given
            raise RuntimeError(f"actor sent files for {driver_dir}, which it does not run")
        apply(Path(driver_dir), ops)

    def _on_ready(self, worker: int, actor: _Actor) -> list[BackendEvent]:
        ray = self._ray
        ref, actor.ready_ref = actor.ready_ref, None
        try:
            payload = ray.get(ref)
        except ray.exceptions.RayError as exc:
            self._failed_starts += 1
            if self._failed_starts >= MAX_FAILED_STARTS:
                raise WorkerStartError(
                    f"{self._failed_starts} Ray actors died before they were ready; last: {exc}"
                ) from exc
            return self._died(worker, actor, exc)
        self._waiting_since = None
        return [BackendEvent(worker, "ready", payload)]

    def _on_result(self, worker: int, actor: _Actor) -> list[BackendEvent]:
        """A run ended: its events came through the inbox, unless its actor is gone."""
        ray = self._ray
        ref, actor.run_ref = actor.run_ref, None
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:  # the actor (or its node) is gone, or it could
            return self._died(worker, actor, exc)  # not reach the inbox: replace it either way
        return []

    def _died(self, worker: int, actor: _Actor, exc: BaseException) -> list[BackendEvent]:
        logger.warning("Ray actor of worker %d is gone: %s", worker, str(exc).splitlines()[0])
        self._kill(actor)
        self._spawn(worker)
        payload = {"exitcode": None, "reason": type(exc).__name__, "wait_ready": True}
        return [BackendEvent(worker, "died", payload)]

    def _kill(self, actor: _Actor) -> None:
        with contextlib.suppress(Exception):  # already dead: nothing to end
            self._ray.kill(actor.handle, no_restart=True)
        actor.run_ref = actor.ready_ref = None

    def _warn_if_stalled(self) -> None:
        """A slot whose actor cannot be placed (its node left) waits; say so now and then."""
        waiting = [w for w, a in self._actors.items() if a.ready_ref is not None]
        if not waiting:
            self._waiting_since = None
            return
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        elif now - self._waiting_since > WAITING_WARN_S:
            logger.warning(
                "worker(s) %s wait for the Ray cluster to place their actor (%s)",
                waiting,
                self._options,
            )
            self._waiting_since = now

    def _end_session(self) -> None:
        if self._owns_session:
            self._ray.shutdown()
