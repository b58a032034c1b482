"""Claiming a job before it runs: its lock, and its files still as the plan saw them.

A job runs only while this process holds its lock, so two executors on one result dir never run
the same job. After locking, the job's state is read again: if another run changed it since
planning (finished it, possibly with other parameters, or recorded its failure), the job is left
as that run left it, never resumed from or overwritten. A job dir that resolves outside the
result root, or cannot be written, is refused before anything is written in it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from filelock import FileLock, Timeout

from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.confine import check_inside, job_root
from sparse_attention_hub.executor.plan import Job
from sparse_attention_hub.executor.progress import RunRecorder
from sparse_attention_hub.executor.results import job_state, reset_job_dir
from sparse_attention_hub.result_files import JOB_FILES, LOCK_FILE

LOCK_RETRY_S = 1.0


@dataclass(frozen=True)
class Claim:
    """What trying a job gave: its `lock` (run it), the state another run `left` it in, the
    reason it is `refused` here; none of them: another executor holds it (try again later)."""

    lock: FileLock | None = None
    left: str | None = None
    refused: ConfigError | OSError | None = None


class Claims:
    """Locks jobs for this run; `expected` is the state each job may be run from."""

    def __init__(self, jobs: list[Job], recorder: RunRecorder, reset: set[str]) -> None:
        self.recorder = recorder
        # The planned state, `pending` once a stale job's old results are removed. Anything
        # else on disk was written by another run meanwhile.
        self.expected = {job.job_id: job.state.value for job in jobs}
        self.reset = set(reset)  # stale jobs whose old results go before their first run
        self._locked_until: dict[str, float] = {}
        self._reported_locked: set[str] = set()

    def claim(self, job: Job) -> Claim | None:
        """Try to claim `job`; None while another executor holds it (tried again after
        `LOCK_RETRY_S`, reported once as `job_locked`)."""
        if self._locked_until.get(job.job_id, 0.0) > time.monotonic():
            return None
        try:
            check_inside(job_root(job), job.result_dir, (*JOB_FILES, LOCK_FILE))
            job.result_dir.mkdir(parents=True, exist_ok=True)
            lock = FileLock(job.result_dir / LOCK_FILE, timeout=0)
            lock.acquire()
        except Timeout:
            self._locked_until[job.job_id] = time.monotonic() + LOCK_RETRY_S
            if job.job_id not in self._reported_locked:  # once, not on every retry
                self._reported_locked.add(job.job_id)
                self.recorder.event("job_locked", job_id=job.job_id)
            return None
        except (ConfigError, OSError) as exc:  # a link out of the tree; an unwritable dir
            return Claim(refused=exc)
        state = job_state(job.result_dir, job.fingerprint)
        expected = self.expected.get(job.job_id, state)
        if state != expected:
            lock.release()  # another executor finished (or failed) it meanwhile
            self.recorder.event(
                "job_skipped",
                job_id=job.job_id,
                reason=f"another run left it {state} (planned {expected})",
            )
            return Claim(left=state)
        if job.job_id in self.reset:
            reset_job_dir(job.result_dir)  # --rerun-stale: the old results go
            self.reset.discard(job.job_id)
            self.expected[job.job_id] = "pending"
        return Claim(lock=lock)
