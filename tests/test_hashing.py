"""Content hashes: values pinned as the code before `hashing.py` made them, and the file memo.

Seeds, synthetic samples and job fingerprints of result trees on disk depend on these bytes:
every pinned value below was computed with the hashing each module spelled out itself before
(a change here makes old trees stale and draws other random masks).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from sparse_attention_hub import hashing
from sparse_attention_hub.benchmark.ruler_synthetic import RulerSynthetic
from sparse_attention_hub.benchmark.synthetic.sizing import tokenizer_fingerprint
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.executor.plan import fingerprint_of
from sparse_attention_hub.hashing import file_sha256, json_sha256
from sparse_attention_hub.sparse_attention import (
    DoubleSparsityTopKConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
    config_fingerprint,
    get_preset,
)
from sparse_attention_hub.sparse_attention.state import SparseState


def test_config_fingerprints_are_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pinned = {
        "streaming": "4202c04922c230e5986cf6e333dce4d6d7bc633137ece43dd96a9523a2d71d23",
        "quest": "d7291f811470a3dd96f272f4fc5b863b32b0310a9f23b64316c029cb93d6575d",
        "vattention": "e760edfcc6f130b6ba1a580168e347d39698ecb97fbac5ccc43db16349bfa46e",
    }
    assert {name: config_fingerprint(get_preset(name)) for name in pinned} == pinned
    monkeypatch.chdir(tmp_path)
    Path("channels.json").write_bytes(b"fixed bytes\n")  # a referenced file: its digest counts
    config = ResearchAttentionConfig(
        [
            SinkMaskerConfig(sink_size=2),
            DoubleSparsityTopKConfig(heavy_size=4, sorted_channel_file="channels.json"),
        ]
    )
    assert config.fingerprint() == (
        "26c71cd82610d46fbb1a4ba5686f11524fad9c3146aa6e359e3d7446c7531f49"
    )


def test_job_fingerprint_is_unchanged() -> None:
    inputs = {
        "model": "m1",
        "adapter": {"model_kwargs": {}, "tokenizer_kwargs": {}, "factory": None},
        "sparse_config": "dense",
        "benchmark": "mock_benchmark",
        "subset": "s",
        "benchmark_options": {"x": [1, 2.5, None, "é"]},
        "generation_kwargs": {},
        "request_kwargs": {"max_requests": 2},
        "version": "0.1.0",
    }
    assert fingerprint_of(inputs) == "9d6cba631b78bc8d"


@pytest.mark.parametrize(
    ("sample_id", "question", "layer", "seed", "first", "third"),
    [
        ("s1", 0, 0, 0, 4477806721217525245, 3073171112516063634),
        ("qasper-t004", 2, 3, 7, 8419545551010660179, 9086546677678463573),
        ("é✓", 1, 29, 123456789, 258604033197575977, 9202045985447123082),
    ],
)
def test_sampling_seeds_are_unchanged(
    sample_id: str, question: int, layer: int, seed: int, first: int, third: int
) -> None:
    state = SparseState()
    state.begin_question(sample_id, question)
    assert state.generator(layer, seed).initial_seed() == first
    state.begin_call(layer, 0)
    state.begin_call(layer, 1)
    assert state.generator(layer, seed).initial_seed() == third


class _Vocab:
    name_or_path = "tiny-tok"

    def get_vocab(self) -> dict[str, int]:
        return {"a": 0, "é": 1, "<s>": 2, "zz": 3}


def test_synthetic_cache_keys_are_unchanged() -> None:
    assert tokenizer_fingerprint(_Vocab()) == {
        "name": "tiny-tok",
        "vocab_sha256": "747e79c3d96efe708c34fdeb178f7bda54f543fdff35d74b1a039fbe3a2f83c0",
    }
    bench = RulerSynthetic(
        ["niah_single_1"], tokenizer=_Vocab(), context_lengths=[128], num_samples=3, seed=5,
        cache_dir="/cache",
    )  # fmt: skip
    assert bench.cache_path("niah_single_1", 128) == Path(
        "/cache/niah_single_1-128-da7e7fa60a835d2a5a07.json"
    )


def test_json_sha256_spellings() -> None:
    payload: dict[str, Any] = {"b": [1, "é"], "a": None}
    assert json_sha256(payload) == hashlib.sha256(b'{"a":null,"b":[1,"\\u00e9"]}').hexdigest()
    spaced = '{"a": null, "b": [1, "é"]}'.encode()
    assert json_sha256(payload, compact=False, ascii_only=False) == (
        hashlib.sha256(spaced).hexdigest()
    )


def test_file_digest_is_remembered_until_the_file_changes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[Path] = []
    real = hashing._sha256_of_bytes

    def counting(path: Path) -> str:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(hashing, "_sha256_of_bytes", counting)
    data = tmp_path / "weights.gguf"
    data.write_bytes(os.urandom(3 * (1 << 20) + 17))  # several chunks plus a partial one
    memo = tmp_path / "memo"
    digest = file_sha256(data, memo)
    assert digest == hashlib.sha256(data.read_bytes()).hexdigest()
    assert file_sha256(data, memo) == digest and len(calls) == 1
    data.write_bytes(b"changed" * (1 << 20))
    assert file_sha256(data, memo) == hashlib.sha256(data.read_bytes()).hexdigest()
    assert len(calls) == 2


def test_small_files_are_hashed_without_a_memo(tmp_path: Path) -> None:
    data = tmp_path / "channels.json"
    data.write_bytes(b"[1, 2]")
    memo = tmp_path / "memo"
    assert file_sha256(data, memo) == hashlib.sha256(b"[1, 2]").hexdigest()
    assert not memo.exists()


def test_an_unwritable_memo_costs_time_not_the_digest(tmp_path: Path) -> None:
    data = tmp_path / "big.bin"
    data.write_bytes(b"x" * hashing.MEMO_MIN_BYTES)
    blocker = tmp_path / "memo"
    blocker.write_text("a file where the memo folder would be")
    assert file_sha256(data, blocker) == hashlib.sha256(data.read_bytes()).hexdigest()


def test_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"gone\.bin' does not exist"):
        file_sha256(tmp_path / "gone.bin")
    with pytest.raises(ConfigError, match="does not exist"):
        file_sha256(tmp_path)  # a folder is not a file
