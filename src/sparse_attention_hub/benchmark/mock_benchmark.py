"""`mock_benchmark`: five inline reading-comprehension questions (docs/benchmarks.md §8).

No download, three contexts (two shared by two questions each), so a quickstart or a test can
exercise grouping, persistence and scoring end to end in seconds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd

from sparse_attention_hub.benchmark.base import Benchmark
from sparse_attention_hub.benchmark.loading import normalise_rows
from sparse_attention_hub.benchmark.registry import register_benchmark

SUBSET = "reading_comprehension"

CONTEXT_A = (
    "The lighthouse on Merrow Point was built in 1871 from grey granite quarried on the island "
    "itself. For its first sixty years the lamp burned whale oil, and the keeper climbed its 114 "
    "steps four times each night to trim the wick. In 1932 the oil lamp was replaced by an "
    "electric bulb powered by a diesel generator housed in a brick shed beside the tower. The last "
    "resident keeper, Agnes Holloway, left in 1968, after which the light was operated "
    "automatically. Today the tower is painted in red and white bands, and its beam can be seen "
    "22 nautical miles out to sea."
)
CONTEXT_B = (
    "Every loaf at the Linden Street bakery begins the evening before it is sold. At six o'clock "
    "the baker mixes flour, water and a portion of the sourdough starter, which the shop has kept "
    "alive since 1994 and which the staff call Bartholomew. The dough rests overnight in a cool "
    "room, a slow fermentation that gives the bread its sour taste. At four in the morning the "
    "loaves are shaped by hand, scored with a razor and baked for forty minutes in a "
    "stone-floored oven. The rye loaves are usually sold out before nine, and leftover bread is "
    "donated each afternoon to a shelter on Canal Road."
)
CONTEXT_C = (
    "The Tessel Glacier fills a high valley on the northern side of Mount Arven. Surveyors first "
    "mapped its edge in 1889, when the ice reached the village of Ostby. Since then the glacier "
    "has retreated almost three kilometres, and its snout now ends beside a milky lake that did "
    "not exist a century ago. Scientists measure the retreat each autumn by placing painted "
    "stones at the ice edge and returning a year later. The meltwater feeds the Ostby River, "
    "which powers a small hydroelectric station supplying about four hundred homes."
)

# (sample_id, context, question, answers)
ROWS: list[tuple[str, str, str, list[str]]] = [
    ("1", CONTEXT_A, "How many steps does the lighthouse on Merrow Point have?", ["114"]),
    ("2", CONTEXT_A, "Who was the last resident keeper of the lighthouse?", ["Agnes Holloway"]),
    ("3", CONTEXT_B, "What do the staff call the bakery's sourdough starter?", ["Bartholomew"]),
    (
        "4",
        CONTEXT_B,
        "Where is the leftover bread donated each afternoon?",
        ["Canal Road", "a shelter on Canal Road"],
    ),
    ("5", CONTEXT_C, "Which river is fed by the glacier's meltwater?", ["Ostby River"]),
]


def is_correct(prediction: str, answers: list[str]) -> bool:
    """Stripped, lower-cased prediction equals or contains any lower-cased answer."""
    cleaned = prediction.strip().lower()
    return any(answer.lower() in cleaned for answer in answers)


@register_benchmark("mock_benchmark")
class MockBenchmark(Benchmark):
    """Five questions about three short invented passages; accuracy on 0-100."""

    benchmark_name = "mock_benchmark"
    all_datasets: ClassVar[list[str]] = [SUBSET]

    def load_subset(self, subset: str) -> pd.DataFrame:
        frame = pd.DataFrame(
            [
                {
                    "id": sample_id,
                    "context": context,
                    "question": question,
                    "answer_prefix": "Answer:",
                    "answers": list(answers),
                    "max_new_tokens": 32,
                }
                for sample_id, context, question, answers in ROWS
            ]
        )
        return normalise_rows(frame, subset, task=SUBSET)

    def score_task(self, task: str, rows: pd.DataFrame) -> pd.DataFrame:
        correct = [
            is_correct(str(p), list(a))
            for p, a in zip(rows["prediction"], rows["answers"], strict=True)
        ]
        return pd.DataFrame(
            {"score": [float(c) for c in correct], "correct": correct}, index=rows.index
        )

    def task_metrics(self, task: str, rows: pd.DataFrame) -> dict[str, Any]:
        return {**super().task_metrics(task, rows), "n_correct": int(rows["correct"].sum())}

    def estimated_work(self) -> float:
        return float(sum(len(context.split()) for _, context, _, _ in ROWS))

    def subset_metrics(self) -> dict[str, str]:
        return {SUBSET: "accuracy (answer contained in prediction)"}
