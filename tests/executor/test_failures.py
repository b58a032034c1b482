"""The failure table: categories from exception classes and process outcomes, never messages."""

from __future__ import annotations

import pytest
import torch

from sparse_attention_hub.errors import (
    ConfigError,
    DatasetLoadError,
    ModelLoadError,
    UnknownNameError,
)
from sparse_attention_hub.executor.failures import (
    category_of_exception,
    failure_from_exception,
    failure_from_exit,
    failure_from_timeout,
    retryable,
)


class MyDatasetError(DatasetLoadError):
    pass


@pytest.mark.parametrize(
    ("exc", "category"),
    [
        (torch.OutOfMemoryError("CUDA out of memory"), "cuda_oom"),
        (ModelLoadError("no weights"), "model_load"),
        (DatasetLoadError("no file"), "dataset"),
        (MyDatasetError("subclass"), "dataset"),
        (ConfigError("bad"), "config"),
        (UnknownNameError("unknown masker"), "config"),
        (MemoryError(), "host_oom"),
        (RuntimeError("CUDA out of memory"), "other"),  # the message never decides
        (ValueError("dataset missing"), "other"),
    ],
)
def test_category_of_exception(exc: BaseException, category: str) -> None:
    assert category_of_exception(exc) == category


def test_failure_keeps_type_and_traceback() -> None:
    try:
        raise DatasetLoadError("subset 'x' failed to load")
    except DatasetLoadError as exc:
        failure = failure_from_exception(exc)
    assert failure.category == "dataset"
    assert failure.exc_type == "sparse_attention_hub.errors.DatasetLoadError"
    assert failure.message == "subset 'x' failed to load"
    assert (
        failure.traceback.startswith("Traceback") and "test_failure_keeps_type" in failure.traceback
    )


@pytest.mark.parametrize(
    ("exitcode", "text"),
    [
        (-9, "killed by signal SIGKILL"),
        (-11, "killed by signal SIGSEGV"),
        (1, "exited with code 1"),
    ],
)
def test_process_outcomes(exitcode: int, text: str) -> None:
    failure = failure_from_exit(exitcode)
    assert failure.category == "worker_died" and text in failure.message


def test_timeout_and_retry_policy() -> None:
    assert failure_from_timeout(2.5).category == "timeout"
    assert "2.5 s" in failure_from_timeout(2.5).message
    assert not retryable("config")
    assert all(retryable(c) for c in ("cuda_oom", "timeout", "worker_died", "dataset", "other"))
