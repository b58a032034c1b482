"""AttentionStats across a resume: the statistics of saved answers stay, the rest is redone."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from sparse_attention_hub.sparse_attention import STATS_FILENAME, AttentionStats


def answer(stats: AttentionStats, sample_id: str, selected: int) -> None:
    """One question: two layers, two calls each, values as device tensors; then the flush."""
    for step, phase in enumerate(["question_prefill", "decode"]):
        stats.set_context(sample_id, 0, phase, step)
        for layer in range(2):
            stats.record(
                layer=layer,
                n_queries=1,
                n_keys=10,
                selected=torch.tensor(selected + layer),
                allowed=torch.tensor(10),
                output_error=torch.tensor(0.1 * selected),
                extra={
                    "metric": torch.tensor(float(selected)),
                    "empty": torch.tensor(float("nan")),
                },
            )
    stats.flush()


def test_resume_keeps_saved_answers_and_matches_an_uninterrupted_job(tmp_path: Path) -> None:
    whole = AttentionStats(output_error=True)
    whole.start(tmp_path / "whole")
    for sample_id, selected in [("a", 3), ("b", 5), ("c", 7)]:
        answer(whole, sample_id, selected)

    resumed = AttentionStats(output_error=True)
    resumed.start(tmp_path / "job")
    for sample_id, selected in [("a", 3), ("b", 5), ("c", 1)]:  # c: flushed, answer never saved
        answer(resumed, sample_id, selected)
    path = tmp_path / "job" / STATS_FILENAME
    path.write_text(path.read_text() + '{"sample_id": "c", "lay')  # torn by the crash
    resumed.start(tmp_path / "job", keep={"a", "b"})
    assert resumed.summary()["n_calls"] == 8
    answer(resumed, "c", 7)

    assert resumed.summary() == whole.summary()
    assert resumed.summary()["metric"] == 5.0 and "empty" not in resumed.summary()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines == [json.loads(line) for line in (tmp_path / "whole" / STATS_FILENAME).open()]


def test_an_empty_keep_starts_a_fresh_file(tmp_path: Path) -> None:
    stats = AttentionStats()
    stats.start(tmp_path)
    answer(stats, "a", 3)
    stats.start(tmp_path, keep=())
    assert (tmp_path / STATS_FILENAME).read_text() == "" and stats.summary()["n_calls"] == 0
