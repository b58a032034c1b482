"""The Ray backend: one long-lived actor per slot, on whatever nodes a Ray cluster has.

It implements the same five-method protocol as the local backend, so planning, model affinity,
retries, timeouts, locks and records stay in the one scheduler. Slots come from the cluster:
`max_concurrent_runs` actors (at most what the cluster can place), each holding one model and
reserving `1 / runs_per_gpu` of a GPU, or one CPU on a cluster without GPUs.

No shared filesystem is needed: this process (the driver) owns the result tree. An actor runs a
bundle in node-local staging dirs seeded with its jobs' files (`staging.py`); after each saved
answer it sends what changed to a small inbox actor on the driver's node and waits for the
inbox to hold it, so an actor that dies loses no saved answer. The driver applies those changes
to the real job dir as they arrive, and each job's final files (manifest last) before its end.
The actors live in `ray_actors.py`; docs/cluster.md says how to start a cluster and what each
node needs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.backends import BACKENDS, BackendEvent, Slot
from sparse_attention_hub.executor.backends.local import MAX_FAILED_STARTS, WorkerStartError
from sparse_attention_hub.executor.backends.ray_actors import Inbox, SlotActor, jobs_of
from sparse_attention_hub.executor.backends.staging import apply, snapshot
from sparse_attention_hub.executor.bundles import Bundle

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
        self._actor_class: Any = ray.remote(SlotActor).options(
            max_restarts=0, max_task_retries=0, **self._options
        )
        self._waiting_since: float | None = None

    # ----- protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        ray = self._ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        inbox_class = ray.remote(Inbox).options(num_cpus=0, scheduling_strategy=here)
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
