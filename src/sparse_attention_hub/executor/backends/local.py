"""The local backend: long-lived worker processes, each pinned to one device.

A GPU worker is spawned (a fresh interpreter) and sees only its GPU: `CUDA_VISIBLE_DEVICES` is in
the environment the process starts with, so no import (of the user's main module, torch or
transformers) can initialise CUDA before it; inside the worker that GPU is `cuda:0`. GPU ids are
positions among the devices the parent sees, so a parent started with `CUDA_VISIBLE_DEVICES=4,5`
maps id 1 to device 5.

A CPU worker is forked from a warm server process (multiprocessing's forkserver) that imported
torch, transformers' model code, the worker and every benchmark module once (`_PRELOAD`, nothing
run): it is ready in a fraction of a second instead of the seconds each spawned interpreter
spends importing (its first job skips the ~2 s transformers import too), and the workers of a
run start together instead of one after another on a busy machine (a respawn after a crash or a
timeout is as quick). It takes the parent's environment as it is at its start (`worker_main`
applies it first thing; modules the server imported, e.g. huggingface_hub's constants such as
`HF_HUB_OFFLINE`, saw the environment of the server's own start: the first CPU worker of this
process, so a notebook that changes them between runs restarts its kernel) and its share of
the cores (`torch.set_num_threads`, and `OMP_NUM_THREADS` etc. for what it starts). The parent
talks to each worker over a pipe and watches its process sentinel, so a crash is noticed at once.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from sparse_attention_hub.errors import ConfigError, SparseAttentionHubError
from sparse_attention_hub.executor.backends import BACKENDS, BackendEvent, Slot
from sparse_attention_hub.executor.bundles import Bundle

logger = logging.getLogger(__name__)

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
GRACE_S = 3.0
MAX_FAILED_STARTS = 3


class WorkerStartError(SparseAttentionHubError, RuntimeError):
    """Workers die before they are ready: the environment is broken, respawning cannot help."""


@dataclass
class _Handle:
    process: BaseProcess
    conn: Connection
    ready: bool = False


@BACKENDS.register("local")
class LocalBackend:
    def __init__(
        self,
        slots: list[Slot],
        gpu_memory_fraction: float | None = None,
        cpu_threads: int | None = None,
        **_: Any,
    ) -> None:
        self.slots = slots
        self.gpu_memory_fraction = gpu_memory_fraction
        n_cpu = sum(s.device == "cpu" for s in slots)
        self.cpu_threads = cpu_threads or max(1, usable_cores() // max(1, n_cpu))
        self._spawn_context = mp.get_context("spawn")
        self._handles: dict[int, _Handle] = {}
        self._failed_starts = 0

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def _spawn(self, slot: Slot) -> None:
        changes = worker_environment(slot.device, self.cpu_threads, os.environ)
        spawned = slot.device.startswith("cuda:") or "forkserver" not in _START_METHODS
        context = self._spawn_context if spawned else _warm_context()
        parent_conn, child_conn = context.Pipe()
        process = context.Process(
            target=worker_main,
            args=(child_conn, slot.worker, slot.device, self.gpu_memory_fraction),
            kwargs={"environment": None if spawned else {**os.environ, **changes}},
            name=f"sah-worker-{slot.worker}",
            daemon=True,
        )
        with _environment(changes if spawned else {}), _without_main_module():
            process.start()  # spawned: the child starts from this environment
        child_conn.close()
        self._handles[slot.worker] = _Handle(process, parent_conn)

    def submit(self, worker: int, bundle: Bundle) -> None:
        try:
            self._handles[worker].conn.send(("bundle", bundle))
        except OSError:  # it died since the last wait (BrokenPipe): its sentinel reports how
            logger.warning("worker %d died before it could take its bundle", worker)

    def wait(self, timeout: float) -> list[BackendEvent]:
        waitables: list[Any] = []
        for handle in self._handles.values():
            waitables += [handle.conn, handle.process.sentinel]
        ready = set(wait(waitables, timeout))
        events: list[BackendEvent] = []
        for worker, handle in list(self._handles.items()):
            if handle.conn in ready or handle.process.sentinel in ready:
                events += self._drain(worker, handle)
            if handle.process.sentinel in ready:
                handle.process.join()
                events.append(BackendEvent(worker, "died", {"exitcode": handle.process.exitcode}))
                handle.conn.close()
                self._failed_starts += not handle.ready
                if self._failed_starts >= MAX_FAILED_STARTS:
                    raise WorkerStartError(
                        f"{self._failed_starts} worker processes died before they were ready "
                        f"(last exit code {handle.process.exitcode}); see their output above. "
                        "Is the Python environment complete (can it import sparse_attention_hub)?"
                    )
                self._spawn(self.slots[worker])
        return events

    def _drain(self, worker: int, handle: _Handle) -> list[BackendEvent]:
        events = []
        try:
            while handle.conn.poll():
                kind, payload = handle.conn.recv()
                handle.ready = handle.ready or kind == "ready"
                events.append(BackendEvent(worker, kind, payload))
        except (EOFError, OSError):
            pass  # the process is gone; its sentinel reports how
        return events

    def cancel(self, worker: int) -> None:
        handle = self._handles[worker]
        handle.process.kill()
        handle.process.join()
        handle.conn.close()
        self._spawn(self.slots[worker])

    def shutdown(self, force: bool = False) -> None:
        for handle in self._handles.values():
            if force:
                handle.process.terminate()
            else:
                with contextlib.suppress(OSError):  # already gone: nothing to tell
                    handle.conn.send(None)
        deadline = time.monotonic() + GRACE_S
        for handle in self._handles.values():
            handle.process.join(max(0.0, deadline - time.monotonic()))
            if handle.process.is_alive():
                handle.process.kill()
                handle.process.join()
            handle.conn.close()
        self._handles.clear()


_PRELOAD = (
    "torch",
    "sparse_attention_hub.executor.worker",
    # what registering our attention function imports (AttentionInterface): ~2 s per worker
    "transformers.modeling_utils",
    "transformers.masking_utils",
)
_START_METHODS = mp.get_all_start_methods()  # no forkserver (Windows): CPU workers are spawned too


def _warm_context() -> mp.context.ForkServerContext:
    """The forkserver context CPU workers are forked from; its server (one per parent process,
    started with the first CPU worker) imports `_PRELOAD` and the benchmark modules."""
    from sparse_attention_hub.benchmark.registry import benchmark_modules

    context = mp.get_context("forkserver")
    assert isinstance(context, mp.context.ForkServerContext)
    context.set_forkserver_preload([*_PRELOAD, *benchmark_modules()])
    return context


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, which containers narrow), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def worker_environment(
    device: str, cpu_threads: int, parent_env: Mapping[str, str]
) -> dict[str, str]:
    """What a worker's environment must hold from its first instruction on.

    `cuda:N` -> `CUDA_VISIBLE_DEVICES` naming the parent's N-th visible device (ids or UUIDs);
    `cpu` -> the thread count for OpenMP / MKL / OpenBLAS (cores / CPU workers).
    """
    if not device.startswith("cuda:"):
        return {var: str(cpu_threads) for var in THREAD_VARS}
    index = int(device.split(":", 1)[1])
    visible = [
        d.strip() for d in parent_env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()
    ]
    if "CUDA_VISIBLE_DEVICES" in parent_env and index >= len(visible):
        raise ConfigError(
            f"gpu id {index} is not among the parent's CUDA_VISIBLE_DEVICES={visible!r}"
        )
    return {"CUDA_VISIBLE_DEVICES": visible[index] if visible else str(index)}


@contextmanager
def _without_main_module() -> Iterator[None]:
    """Start a spawned child without the parent's `__main__`.

    spawn hands the child the main module's path or name, and the child runs it again before
    the worker starts: stdin (`python - <<EOF`) has no file to run, and a script without
    `if __name__ == "__main__":` would start a second executor in every worker. Workers need
    nothing from it (jobs hold only this package's types), so the child is given none.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__, no __spec__
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@contextmanager
def _environment(changes: Mapping[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def worker_main(
    conn: Connection,
    worker_id: int,
    device: str,
    gpu_memory_fraction: float | None,
    environment: Mapping[str, str] | None = None,
) -> None:
    """The worker process: pinned by the environment it was spawned with (GPU), or handed
    `environment` (forked CPU worker), which replaces the server's before anything else runs."""
    if environment is not None:
        os.environ.clear()
        os.environ.update(environment)
    pinned = device.startswith("cuda:")
    local_device = "cuda:0" if pinned else "cpu"
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides how Ctrl-C ends a job
    logging.basicConfig(
        level=logging.WARNING, format=f"[worker {worker_id}] %(levelname)s %(name)s: %(message)s"
    )
    _exit_with_parent()
    if pinned and gpu_memory_fraction is not None:
        import torch

        torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction, 0)
    if not pinned:  # `worker_environment` gave it OMP_NUM_THREADS
        import torch  # the server loaded it before this worker's share was known

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from sparse_attention_hub.benchmark.registry import list_benchmarks
    from sparse_attention_hub.executor.worker import Worker

    list_benchmarks()  # import every benchmark module now, not inside the first job's timeout
    worker = Worker(
        worker_id,
        local_device,
        notify=lambda kind, payload: conn.send((kind, payload)),
        label=device,
    )
    conn.send(("ready", {"pid": os.getpid(), "device": device, "threads": _threads()}))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        _, bundle = message
        worker.execute(bundle)  # its every event goes to the parent through notify
    worker.release_model()
    _exit_now()


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _exit_now() -> None:
    """End the worker without the interpreter's teardown, which the parent's shutdown waits for
    (unloading torch and pandas takes a second or more; past GRACE_S the worker is killed).

    Nothing is left to write: every job file was closed, and synced where it must be, before
    its job was reported; only the log handlers and standard streams may hold output.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream has nothing to flush
            stream.flush()
    os._exit(0)


def _exit_with_parent(interval_s: float = 1.0) -> None:
    """An orphaned worker (its parent was killed) must not keep running a job nobody owns."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="sah-parent-watch", daemon=True).start()
