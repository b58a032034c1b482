"""How bundles run: a small protocol (start, submit, wait, cancel, shutdown) and its backends.

The scheduler decides *which* worker gets *which* bundle (jobs that share their context prefills,
`executor.bundles.Bundle`); a backend only owns the workers: `local` (spawned long-lived
processes), `debug` (in-process, so pdb works) and `ray`. A backend never looks inside a bundle:
it hands it to `Worker.execute(bundle)` in the worker's process and passes on, unchanged, every
`notify(kind, payload)` that call makes, adding only its own `ready` and `died`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.registry import Registry


@dataclass(frozen=True)
class BackendEvent:
    """What a worker did. Kinds: `ready` {pid, device} (a worker started) and `died` {exitcode}
    (its process ended) from the backend itself; from `Worker.execute`: `started` {bundle_id,
    job_ids}, `model_loaded`, `dataset_loaded`, `answered` {job_id} (a prediction was saved; the
    scheduler ignores it, the Ray backend sends the job's new lines to the driver on it), and per
    job one `finished` {job_id, ...} or `raised` {job_id, failure}. A bundle is over when each of
    its jobs has finished or raised (or its worker died). A died payload with `wait_ready` keeps
    the slot out of dispatch until its replacement reports ready (a Ray actor whose node left may
    never be placed)."""

    worker: int
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: `device` as the user names it (`cpu`, `cuda:3`)."""

    worker: int
    device: str


class Backend(Protocol):
    slots: list[Slot]

    def start(self) -> None:
        """Start every worker (they may still be initialising when this returns); each reports
        `ready` once it can take a bundle, and gets none before."""

    def submit(self, worker: int, bundle: Bundle) -> None:
        """Hand `bundle` to the idle `worker` (it runs `Worker.execute(bundle)` there)."""

    def wait(self, timeout: float) -> list[BackendEvent]:
        """Events since the last call, waiting up to `timeout` seconds for the first one."""

    def cancel(self, worker: int) -> None:
        """Stop the bundle on `worker` now (kill it) and put a fresh worker in its slot."""

    def shutdown(self, force: bool = False) -> None:
        """End every worker: politely when idle, at once when `force`."""


BackendFactory = Callable[..., Backend]
BACKENDS: Registry[BackendFactory] = Registry("backend")


def slot_layout(gpu_ids: list[int], max_concurrent_runs: int) -> list[Slot]:
    """`max_concurrent_runs` workers spread round-robin over the GPUs (none given: CPU)."""
    if not gpu_ids:
        return [Slot(i, "cpu") for i in range(max_concurrent_runs)]
    return [Slot(i, f"cuda:{gpu_ids[i % len(gpu_ids)]}") for i in range(max_concurrent_runs)]


def backend_problems(name: str) -> list[str]:
    """What keeps backend `name` from running here (a missing optional package), or []."""
    if name != "ray":
        return []
    from sparse_attention_hub.executor.backends.ray import ray_problems

    return ray_problems()


def create_backend(name: str, slots: list[Slot], **options: Any) -> Backend:
    _register_builtin()
    return BACKENDS.get(name)(slots, **options)


def _register_builtin() -> None:
    from sparse_attention_hub.executor.backends import debug, local, ray  # noqa: F401 - registers


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendEvent",
    "Slot",
    "backend_problems",
    "create_backend",
    "slot_layout",
]
