"""The in-process backend: one worker in the caller's process, so breakpoints and pdb work.

Bundles run synchronously inside `wait`; timeouts cannot be enforced and `cancel` is not possible.
"""

from __future__ import annotations

import os
from typing import Any

from sparse_attention_hub.executor.backends import BACKENDS, BackendEvent, Slot
from sparse_attention_hub.executor.bundles import Bundle
from sparse_attention_hub.executor.worker import Worker


@BACKENDS.register("debug")
class DebugBackend:
    def __init__(self, slots: list[Slot], **_: Any) -> None:
        self.slots = [Slot(0, slots[0].device if slots else "cpu")]
        self._events: list[BackendEvent] = []
        self._worker = Worker(0, self.slots[0].device, notify=self._notify)
        self._bundle: Bundle | None = None

    def _notify(self, kind: str, payload: dict[str, Any]) -> None:
        self._events.append(BackendEvent(0, kind, payload))

    def start(self) -> None:
        self._notify("ready", {"pid": os.getpid(), "device": self.slots[0].device})

    def submit(self, worker: int, bundle: Bundle) -> None:
        self._bundle = bundle

    def wait(self, timeout: float) -> list[BackendEvent]:
        if self._bundle is not None:
            bundle, self._bundle = self._bundle, None
            self._worker.execute(bundle)
        events, self._events = self._events, []
        return events

    def cancel(self, worker: int) -> None:
        raise NotImplementedError("the debug backend runs jobs in-process and cannot cancel them")

    def shutdown(self, force: bool = False) -> None:
        self._worker.release_model()
