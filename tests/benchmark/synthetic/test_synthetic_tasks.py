"""Generated samples are solvable and their answers right: needles, chains, word counts."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from typing import Any

import pytest

from sparse_attention_hub.benchmark.synthetic.niah import DEPTHS, NIAH_TASKS, depth_position
from sparse_attention_hub.benchmark.synthetic.prompt import insert_at_random, join_keys
from sparse_attention_hub.benchmark.synthetic.resources import NOISE_SENTENCE, load_resources

Rows = dict[tuple[str, int], list[dict[str, Any]]]
NEEDLE = re.compile(r"One of the special magic (numbers|uuids) for (\S+) is: (\S+)\.")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
WORD_KEY = re.compile(r"^[a-z]+-[a-z]+$")


def query_keys(question: str) -> list[str]:
    query = re.search(r" for (.+) mentioned in the provided text\?$", question)
    assert query is not None, question
    return re.split(r", and |, ", query.group(1))


def haystack_of(context: str) -> str:
    return context.split("afterwards.\n", 1)[1].removesuffix("\n")


def check_value(kind: str, value: str) -> None:
    if kind == "numbers":
        assert value.isdigit() and 1_000_000 <= int(value) <= 9_999_999
    else:
        assert UUID4.match(value), value


@pytest.mark.parametrize("task", list(NIAH_TASKS))
def test_niah_needles_are_present_and_answers_are_their_values(
    task: str, synthetic_rows: Rows
) -> None:
    config = NIAH_TASKS[task]
    resources = load_resources()
    for row in synthetic_rows[task, 1024]:
        context, question, prefix = row["context"], row["question"], row["answer_prefix"]
        keys = query_keys(question)
        assert len(keys) == config.num_queries and len(set(keys)) == len(keys)
        assert prefix.startswith("The special magic") and join_keys(keys) in prefix
        needles = NEEDLE.findall(context)
        assert {kind for kind, _, _ in needles} == {config.value_kind}
        by_key: dict[str, list[str]] = {}
        for _, key, value in needles:
            by_key.setdefault(key, []).append(value)
        if config.haystack == "needle":
            # distractor keys never reuse a real key: each queried key has exactly its values
            assert all(len(by_key[key]) == config.num_values for key in keys)
            assert len(needles) > 5  # distractors (uuid needles are ~60 tokens each)
        else:
            num_keys = max(config.num_keys, config.num_queries)
            assert len(by_key) == num_keys and len(needles) == num_keys * config.num_values
        answers = row["answers"]  # query order; a key's values in generation order
        slices = [
            answers[i : i + config.num_values] for i in range(0, len(answers), config.num_values)
        ]
        assert [sorted(s) for s in slices] == [sorted(by_key[key]) for key in keys]
        assert len(set(row["answers"])) == config.num_queries * config.num_values
        for key in by_key:
            if config.key_kind == "words":
                adjective, noun = key.split("-")
                assert adjective in resources.adjectives and noun in resources.nouns
            else:
                check_value("uuids", key)
        for value in row["answers"]:
            check_value(config.value_kind, value)

        single = config.num_queries * config.num_values == 1
        noun = config.value_kind.removesuffix("s") if single else config.value_kind
        opening = "A special magic" if single else "Some special magic"
        assert context.startswith(f"{opening} {noun} ")
        assert question.startswith("What is" if single else "What are all")
        assert prefix.endswith(" is" if single else " are")

        haystack = haystack_of(context)
        if config.haystack == "noise":
            lines = haystack.split("\n")
            assert all(line == NOISE_SENTENCE or NEEDLE.fullmatch(line) for line in lines)
            assert sum(line == NOISE_SENTENCE for line in lines) > 10
        elif config.haystack == "needle":
            assert all(NEEDLE.fullmatch(line) for line in haystack.split("\n"))
        else:  # essay: needles sit at sentence boundaries of the filler text
            for match in NEEDLE.finditer(haystack):
                before = haystack[: match.start()]
                assert before == "" or (before.endswith(" ") and before[-2] in ".!?")
            assert haystack.split()[0] == resources.essay_words[0] or NEEDLE.match(haystack)


def test_niah_single_variants_use_their_haystacks(synthetic_rows: Rows) -> None:
    essay = synthetic_rows["niah_single_2", 1024][0]["context"]
    assert "garden" in essay and NOISE_SENTENCE not in essay
    assert NOISE_SENTENCE in synthetic_rows["niah_single_1", 1024][0]["context"]


def resolve(lines: list[str]) -> tuple[dict[str, int], int]:
    """Value of every variable assigned in `lines`, following `VAR A = VAR B` links."""
    links: dict[str, str] = {}
    values: dict[str, int] = {}
    for line in lines:
        match = re.fullmatch(r"VAR ([A-Z]+) = (?:VAR ([A-Z]+)|(\d+)) ?", line)
        if match:
            name, source, number = match.groups()
            if number:
                values[name] = int(number)
            else:
                links[name] = source
    while links:
        for name, source in list(links.items()):
            if source in values:
                values[name] = values[source]
                del links[name]
    return values, len([line for line in lines if line.startswith("VAR ")])


@pytest.mark.parametrize("length", [1024, 4096])
def test_vt_chain_resolves_to_the_answers(length: int, synthetic_rows: Rows) -> None:
    for row in synthetic_rows["vt", length]:
        value = int(re.search(r"assigned the value (\d+) in", row["question"]).group(1))  # type: ignore[union-attr]
        assert row["answer_prefix"].endswith(
            f"5 variables are assigned the value {value}, they are: "
        )
        example, main = row["context"].rsplit("Memorize and track the chain(s)", 1)
        values, assignments = resolve(main.split("\n"))
        assert assignments == 5
        assert sorted(n for n, v in values.items() if v == value) == sorted(row["answers"])
        assert all(re.fullmatch(r"[A-Z]{5}", name) for name in row["answers"])
        assert ". \n" not in main
        # the solved one-shot example: 3-letter names, answered after its own prefix
        shown = re.search(r"they are:  ([A-Z]{3}(?: [A-Z]{3}){4})\n$", example)
        assert shown is not None
        example_values, _ = resolve(example.split("\n"))
        asked = int(re.search(r"assigned the value (\d+) in the text above\.", example).group(1))  # type: ignore[union-attr]
        assert sorted(n for n, v in example_values.items() if v == asked) == sorted(
            shown.group(1).split()
        )
        assert example.startswith("Memorize and track the chain(s)")


@pytest.mark.parametrize(
    ("length", "common", "uncommon", "ex_words", "ex_common"),
    [(1024, 6, 1, 20, 3), (4096, 30, 3, 40, 10)],
)
def test_cwe_common_words_are_the_most_frequent(
    length: int, common: int, uncommon: int, ex_words: int, ex_common: int, synthetic_rows: Rows
) -> None:
    for row in synthetic_rows["cwe", length]:
        example, main = row["context"].rsplit("Below is a numbered list of words.", 1)
        entries = re.findall(r"(\d+)\. ([a-z]+)", main)
        assert [int(n) for n, _ in entries] == list(range(1, len(entries) + 1))
        counts = Counter(word for _, word in entries)
        answers = row["answers"]
        assert len(answers) == 10 and {counts[w] for w in answers} == {common}
        assert {c for w, c in counts.items() if w not in answers} == {uncommon}
        assert len(counts) > 10
        # the solved example: its own ten words, numbered after its answer prefix
        solved = re.search(r"are: 1\. (\w+)((?: \d+\. \w+){9})\n$", example)
        assert solved is not None
        example_words = [solved.group(1), *re.findall(r"\d+\. (\w+)", solved.group(2))]
        example_list = example.split("Memorize the ones that appear most often.\n", 1)[1]
        example_list = example_list.split("\nQuestion:", 1)[0]
        example_counts = Counter(re.findall(r"\d+\. ([a-z]+)", example_list))
        assert len(example_counts) == ex_words
        assert {example_counts[w] for w in example_words} == {ex_common}
        assert not set(example_counts) & set(counts)  # example and sample share no word


@pytest.mark.parametrize("length", [1024, 4096])
def test_fwe_answers_are_the_three_most_frequent_coded_words(
    length: int, synthetic_rows: Rows
) -> None:
    for row in synthetic_rows["fwe", length]:
        text = row["context"].split("three most frequently appeared coded words. ", 1)[1]
        counts = Counter(text.split())
        ranked = [word for word, _ in counts.most_common()]
        assert ranked[0] == "..."
        assert ranked[1:4] == row["answers"]
        assert counts[ranked[3]] > counts[ranked[4]]  # no tie at the cut
        assert all(re.fullmatch(r"[a-z]{6}", w) for w in ranked[1:])
        assert len(counts) <= (length - 50) // 50


def test_insert_at_random_keeps_item_order_and_base() -> None:
    import random

    rng = random.Random("x")
    merged = insert_at_random(rng, ["n"] * 50, ["a", "b", "c"])
    assert [x for x in merged if x != "n"] == ["a", "b", "c"] and merged.count("n") == 50


def test_depths_are_forty_evenly_spaced_percentages() -> None:
    assert len(DEPTHS) == 40 and DEPTHS[0] == 0 and DEPTHS[-1] == 100
    assert all(b - a == pytest.approx(100 / 39) for a, b in itertools.pairwise(DEPTHS))


@pytest.mark.parametrize(
    ("sentences", "index", "position"),
    # floor(S * (100 i / 39) / 100): 100 x 2.56 % -> 2 (an integer depth of 3 % would give 3);
    # 39 sentences at 33.3 % -> exactly 13 (a float product could land on 12.999...)
    [(100, 1, 2), (39, 13, 13), (100, 20, 51), (7, 39, 7), (7, 0, 0), (3, 12, 0), (3, 13, 1)],
)
def test_depth_positions_are_exact_floors(sentences: int, index: int, position: int) -> None:
    assert depth_position(sentences, index) == position


def test_join_keys_phrasing() -> None:
    assert join_keys(["a"]) == "a"
    assert join_keys(["a", "b", "c", "d"]) == "a, b, c, and d"


# The texts of docs/benchmarks.md §9, typed from the docs (not from the code).
NIAH_SPEC = {
    True: (
        "A special magic {t} is hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the {t} afterwards.\n{haystack}\n",
        "What is the special magic {t} for {query} mentioned in the provided text?",
        "The special magic {t} for {query} mentioned in the provided text is",
    ),
    False: (
        "Some special magic {t} are hidden within the following text. Make sure to memorize it. "
        "I will quiz you about the {t} afterwards.\n{haystack}\n",
        "What are all the special magic {t} for {query} mentioned in the provided text?",
        "The special magic {t} for {query} mentioned in the provided text are",
    ),
}


@pytest.mark.parametrize("task", list(NIAH_TASKS))
def test_niah_texts_letter_by_letter(task: str, synthetic_rows: Rows) -> None:
    config = NIAH_TASKS[task]
    single = config.num_queries * config.num_values == 1
    noun = config.value_kind.removesuffix("s") if single else config.value_kind
    for row in synthetic_rows[task, 1024]:
        fields = {"t": noun, "query": join_keys(query_keys(row["question"]))}
        fields["haystack"] = haystack_of(row["context"])
        context, question, prefix = (text.format(**fields) for text in NIAH_SPEC[single])
        assert (row["context"], row["question"], row["answer_prefix"]) == (
            context,
            question,
            prefix,
        )
        assert row["max_new_tokens"] == 128


def test_vt_cwe_fwe_texts_letter_by_letter(synthetic_rows: Rows) -> None:
    for row in synthetic_rows["vt", 1024]:
        value = row["question"].split("the value ")[1].split(" ")[0]
        haystack = row["context"].rsplit("in the following text.\n\n", 1)[1].removesuffix("\n")
        assert row["context"].endswith(
            "Memorize and track the chain(s) of variable assignment hidden in the following "
            f"text.\n\n{haystack}\n"
        )
        assert row["question"] == (
            f"Question: Find all variables that are assigned the value {value} in the text above."
        )
        assert row["answer_prefix"] == (
            "Answer: According to the chain(s) of variable assignment in the text above, "
            f"5 variables are assigned the value {value}, they are: "
        )
    for row in synthetic_rows["cwe", 1024]:
        listing = row["context"].rsplit("appear most often.\n", 1)[1].removesuffix("\n")
        assert row["context"].endswith(
            "Below is a numbered list of words. In these words, some appear more often than "
            f"others. Memorize the ones that appear most often.\n{listing}\n"
        )
        assert row["question"] == "Question: What are the 10 most common words in the above list?"
        assert row["answer_prefix"] == (
            "Answer: The top 10 words that appear most often in the list are:"
        )
    for row in synthetic_rows["fwe", 1024]:
        text = row["context"].split("coded words. ", 1)[1].removesuffix("\n")
        assert row["context"] == (
            "Read the following coded text and track the frequency of each coded word. Find "
            f"the three most frequently appeared coded words. {text}\n"
        )
        assert row["question"] == (
            "Question: Do not provide any explanation. Please ignore the dots '....'. What are "
            "the three most frequently appeared words in the above coded text?"
        )
        assert row["answer_prefix"] == (
            "Answer: According to the coded text above, the three most frequently appeared "
            "words are:"
        )
