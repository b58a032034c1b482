"""Why a job failed, from one small table keyed by exception class and process outcome.

Categories never come from searching message text: an exception maps by its class (first match
in `EXCEPTION_TABLE`, walking the MRO), a dead worker by its exit code or signal, a hung job by
the parent's watchdog. The table also says whether retrying can help.
"""

from __future__ import annotations

import signal
import sys
import traceback
from dataclasses import asdict, dataclass
from typing import Any

from sparse_attention_hub.errors import ConfigError, DatasetLoadError, ModelLoadError

CUDA_OOM = "cuda_oom"
MODEL_LOAD = "model_load"
DATASET = "dataset"
CONFIG = "config"
HOST_OOM = "host_oom"
TIMEOUT = "timeout"
WORKER_DIED = "worker_died"
OTHER = "other"

# (exception class or "module.QualName" resolved only if that module is loaded, category).
# Order matters: the first entry the exception is an instance of wins.
EXCEPTION_TABLE: tuple[tuple[type[BaseException] | str, str], ...] = (
    ("torch.OutOfMemoryError", CUDA_OOM),
    (ModelLoadError, MODEL_LOAD),
    (DatasetLoadError, DATASET),
    (ConfigError, CONFIG),
    (MemoryError, HOST_OOM),
)

# Deterministic failures: the same inputs fail the same way, so a retry only wastes a slot.
NOT_RETRYABLE = frozenset({CONFIG})


def _resolve(entry: type[BaseException] | str) -> type[BaseException] | None:
    """A class from the table; a dotted name only when its module is already imported."""
    if not isinstance(entry, str):
        return entry
    module_name, _, attr = entry.rpartition(".")
    module = sys.modules.get(module_name)  # torch absent => the error cannot be a torch OOM
    found = getattr(module, attr, None) if module is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def category_of_exception(exc: BaseException) -> str:
    for entry, category in EXCEPTION_TABLE:
        cls = _resolve(entry)
        if cls is not None and isinstance(exc, cls):
            return category
    return OTHER


def retryable(category: str) -> bool:
    return category not in NOT_RETRYABLE


@dataclass(frozen=True)
class Failure:
    """One failed attempt: what happened, in which category, with the full traceback if any."""

    category: str
    exc_type: str
    message: str
    traceback: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def failure_from_exception(exc: BaseException) -> Failure:
    cls = type(exc)
    return Failure(
        category=category_of_exception(exc),
        exc_type=f"{cls.__module__}.{cls.__qualname__}",
        message=str(exc),
        traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )


def failure_from_exit(exitcode: int | None, reason: str | None = None) -> Failure:
    """A worker process that ended while holding a job (negative exit code = killed by signal).

    `reason` is what a backend that sees no exit code knows instead (Ray: `ActorDiedError`).
    """
    if exitcode is None and reason:
        how = f"is gone ({reason})"
    elif exitcode is not None and exitcode < 0:
        try:
            how = f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    else:
        how = f"exited with code {exitcode}"
    return Failure(category=WORKER_DIED, exc_type="WorkerDied", message=f"worker process {how}")


def failure_from_timeout(timeout_s: float) -> Failure:
    return Failure(
        category=TIMEOUT,
        exc_type="JobTimeout",
        message=f"job ran past its {timeout_s:g} s timeout; its worker was killed",
    )
