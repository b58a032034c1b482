"""ModelAdapterHF on a tiny random Llama: evaluation setup of docs/methods.md §7, end to end."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from sparse_attention_hub.adapters import hf
from sparse_attention_hub.adapters.base import Request
from sparse_attention_hub.adapters.prompting import encode_request
from sparse_attention_hub.errors import ConfigError
from sparse_attention_hub.sparse_attention import (
    LocalMaskerConfig,
    RandomSamplingConfig,
    ResearchAttentionConfig,
    SinkMaskerConfig,
)

CONTEXT = "The museum opened in 1897. Its first curator was Ada Lind. " * 6
QUESTIONS = ["Who was the first curator?", "When did the museum open?", "What is this text about?"]
PREFIX = "Answer:"
STREAMING = ResearchAttentionConfig(
    masker_configs=[SinkMaskerConfig(sink_size=4), LocalMaskerConfig(window_size=16)]
)
SAMPLING = ResearchAttentionConfig(
    masker_configs=[
        SinkMaskerConfig(sink_size=4),
        LocalMaskerConfig(window_size=8),
        RandomSamplingConfig(sampling_rate=0.2),
    ]
)


@pytest.fixture(scope="module")
def adapter(tiny_llama_dir: Path) -> Iterator[hf.ModelAdapterHF]:
    adapter = hf.ModelAdapterHF(str(tiny_llama_dir))
    yield adapter
    adapter.close()


@pytest.fixture(autouse=True)
def dense_again(adapter: hf.ModelAdapterHF) -> Iterator[None]:
    yield
    adapter.set_sparse_attention_config(None)


@contextmanager
def forward_inputs(adapter: hf.ModelAdapterHF) -> Iterator[list[list[int]]]:
    """Record the input ids of every model forward."""
    seen: list[list[int]] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        seen.append(kwargs["input_ids"][0].tolist())

    handle = adapter.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def ask(
    adapter: hf.ModelAdapterHF, questions: list[str], ids: list[str] | None = None, **gen: Any
) -> list[str]:
    response = adapter.process_request(
        Request(CONTEXT, questions, PREFIX, question_ids=ids), {"max_new_tokens": 6, **gen}, {}
    )
    return response.response_list()


def test_kv_reuse_equals_full_reprefill_and_context_runs_once(adapter: hf.ModelAdapterHF) -> None:
    encoded = encode_request(adapter.tokenizer, CONTEXT, QUESTIONS, PREFIX)
    with forward_inputs(adapter) as seen:
        answers = ask(adapter, QUESTIONS)
    assert [ids for ids in seen if ids == encoded.context_ids] == [encoded.context_ids]
    assert seen[0] == encoded.context_ids and sum(len(ids) > 1 for ids in seen) == 1 + len(
        QUESTIONS
    )
    for question_ids, answer in zip(encoded.question_ids, answers, strict=True):
        prompt = torch.tensor([encoded.context_ids + question_ids])
        with torch.no_grad():
            full = adapter.model.generate(
                prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=6,
                do_sample=False,
                eos_token_id=sorted(adapter.eos_ids),
                pad_token_id=adapter.tokenizer.pad_token_id,
            )
        assert answer == adapter.tokenizer.decode(
            full[0, prompt.shape[1] :], skip_special_tokens=True
        )
    assert (
        len(seen) == 1 + len(QUESTIONS) * 6
    )  # no EOS from this model: prefill + 5 decode steps each


def test_each_answer_is_reported_as_soon_as_it_exists(adapter: hf.ModelAdapterHF) -> None:
    reported: list[tuple[int, str, int, Any]] = []
    with forward_inputs(adapter) as seen:

        def on_answer(index: int, answer: str, info: Any) -> None:
            reported.append((index, answer, len(seen), dict(info)))

        request = Request(CONTEXT, QUESTIONS, PREFIX)
        response = adapter.process_request(request, {"max_new_tokens": 6}, {}, on_answer)
    answers = response.response_list()
    assert [(i, a) for i, a, _, _ in reported] == list(enumerate(answers))
    # question k is reported after the context prefill and its own 6 forwards, before the next
    assert [n for _, _, n, _ in reported] == [1 + 6 * (k + 1) for k in range(len(QUESTIONS))]
    timings = [info.pop("timing") for *_, info in reported]
    assert all(info == response.info for *_, info in reported)
    # each answer says what it cost; the first one also pays the context prefill
    assert [t["tokens_generated"] for t in timings] == [6] * len(QUESTIONS)
    assert ["context_prefill_s" in t for t in timings] == [True] + [False] * (len(QUESTIONS) - 1)
    assert all(t["question_prefill_s"] >= 0 and t["decode_s"] >= 0 for t in timings)


@pytest.mark.parametrize(
    "config", [None, STREAMING, SAMPLING], ids=["dense", "streaming", "sampling"]
)
def test_answer_does_not_depend_on_question_order(adapter: hf.ModelAdapterHF, config: Any) -> None:
    adapter.set_sparse_attention_config(config)
    ids = ["s1", "s2", "s3"]
    together = ask(adapter, QUESTIONS, ids)
    reversed_ = ask(adapter, QUESTIONS[::-1], ids[::-1])[::-1]
    alone = [ask(adapter, [q], [i])[0] for q, i in zip(QUESTIONS, ids, strict=True)]
    assert together == reversed_ == alone


def test_sparse_answers_differ_from_dense_and_empty_config_equals_dense(
    adapter: hf.ModelAdapterHF,
) -> None:
    dense = ask(adapter, QUESTIONS)
    adapter.set_sparse_attention_config(ResearchAttentionConfig(masker_configs=[]))
    assert ask(adapter, QUESTIONS) == dense
    adapter.set_sparse_attention_config(SAMPLING)
    assert ask(adapter, QUESTIONS) != dense


def test_single_string_question_gets_a_string(adapter: hf.ModelAdapterHF) -> None:
    response = adapter.process_request(
        Request(CONTEXT, QUESTIONS[0], PREFIX), {"max_new_tokens": 3}, {}
    )
    assert isinstance(response.responses, str)
    assert response.info == {
        "truncated_tokens": 0,
        "context_tokens": len(encode_request(adapter.tokenizer, CONTEXT, [], PREFIX).context_ids),
    }


def test_middle_truncation_is_recorded_and_prefilled(adapter: hf.ModelAdapterHF) -> None:
    full = encode_request(adapter.tokenizer, CONTEXT, QUESTIONS[:1], PREFIX).context_ids
    with forward_inputs(adapter) as seen:
        response = adapter.process_request(
            Request(CONTEXT, QUESTIONS[:1], PREFIX),
            {"max_new_tokens": 2},
            {"max_context_length": 30},
        )
    assert response.info["truncated_tokens"] == len(full) - 30
    assert seen[0] == full[:15] + full[-15:]


def test_eos_stops_generation(adapter: hf.ModelAdapterHF, monkeypatch: pytest.MonkeyPatch) -> None:
    first_token = adapter.tokenizer.encode(
        ask(adapter, QUESTIONS[:1])[0], add_special_tokens=False
    )[0]
    monkeypatch.setattr(adapter, "eos_ids", frozenset({first_token}))
    with forward_inputs(adapter) as seen:
        assert ask(adapter, QUESTIONS[:1]) == [""]
    assert len(seen) == 2  # context prefill + question prefill, no decode step


def test_stop_string_cuts_the_answer_and_stops(adapter: hf.ModelAdapterHF) -> None:
    answer = ask(adapter, QUESTIONS[:1], max_new_tokens=8)[0]
    stop = answer[len(answer) // 2 : len(answer) // 2 + 3]
    with forward_inputs(adapter) as seen:
        cut = ask(adapter, QUESTIONS[:1], max_new_tokens=8, stop=[stop])[0]
    assert cut == answer[: answer.find(stop)]
    assert len(seen) < 1 + 8


def test_sampling_is_reproducible(adapter: hf.ModelAdapterHF) -> None:
    kwargs: dict[str, Any] = {"do_sample": True, "temperature": 2.0, "seed": 3, "max_new_tokens": 8}
    first = ask(adapter, QUESTIONS, **kwargs)
    assert ask(adapter, QUESTIONS, **kwargs) == first
    assert ask(adapter, QUESTIONS, **{**kwargs, "seed": 4}) != first


def test_kwargs_are_validated_and_never_mutated(adapter: hf.ModelAdapterHF) -> None:
    generation = {"max_new_tokens": 2, "stop": ["\n"]}
    request_kwargs = {"max_context_length": 100, "max_requests": 3}
    before = copy.deepcopy((generation, request_kwargs))
    adapter.process_request(Request(CONTEXT, QUESTIONS[:1]), generation, request_kwargs)
    assert (generation, request_kwargs) == before
    request = Request(CONTEXT, QUESTIONS[:1])
    with pytest.raises(ValueError, match="num_beams"):
        adapter.process_request(request, {"num_beams": 2}, {})
    with pytest.raises(ValueError, match="truncate"):
        adapter.process_request(request, {}, {"truncate": True})
    with pytest.raises(ValueError, match="max_context_length"):
        adapter.process_request(request, {}, {"max_context_length": 0})


def test_switching_configs_never_reloads(
    adapter: hf.ModelAdapterHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights reloaded")

    monkeypatch.setattr(hf, "load_model", forbidden)
    model = adapter.model
    for config in (STREAMING, None, SAMPLING):
        adapter.set_sparse_attention_config(config)
        ask(adapter, QUESTIONS[:1], max_new_tokens=2)
    assert adapter.model is model and adapter.model.config._attn_implementation == "sdpa"
    with pytest.raises(ConfigError, match="ResearchAttentionConfig"):
        adapter.set_sparse_attention_config({"masker_configs": []})  # type: ignore[arg-type]


def test_statistics(adapter: hf.ModelAdapterHF, tmp_path: Path) -> None:
    adapter.start_statistics(tmp_path)
    ask(adapter, QUESTIONS[:1], max_new_tokens=2)
    dense = adapter.statistics_summary()
    assert dense["density"]["overall"] == 1.0 and dense["output_error"]["overall"] == 0.0
    adapter.set_sparse_attention_config(STREAMING)
    adapter.start_statistics(tmp_path)
    ask(adapter, QUESTIONS[:2], ["a", "b"], max_new_tokens=3)
    summary = adapter.statistics_summary()
    assert 0.0 < summary["density"]["overall"] < 1.0
    lines = (tmp_path / "attention_stats.jsonl").read_text().splitlines()
    calls = [line for line in lines if '"question_totals"' not in line]
    layers = adapter.model.config.num_hidden_layers
    assert len(calls) == 2 * 3 * layers  # 2 questions x (prefill + 2 decode steps) x layers
    assert '"sample_id": "b"' in calls[-1] and '"phase": "decode"' in calls[-1]
    assert len(lines) == len(calls) + 2  # and the totals of each question


def test_describe(adapter: hf.ModelAdapterHF, tiny_llama_dir: Path) -> None:
    adapter.set_sparse_attention_config(STREAMING)
    described = adapter.describe()
    assert described["model_name"] == str(tiny_llama_dir) and described["source_kind"] == "local"
    assert (described["dtype"], described["device"], described["attn_implementation"]) == (
        "float32",
        "cpu",
        "sdpa",
    )
    assert described["sparse_attention_config"]["masker_configs"][0] == {
        "type": "sink",
        "sink_size": 4,
    }


@pytest.mark.parametrize("device", ["cuda:0", "cuda", "tpu", "cpu:x", "meta"])
def test_bad_devices(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError):
        hf.parse_device(device)
    assert hf.parse_device("cpu") == torch.device("cpu")


def test_close_frees_the_model(make_tiny_adapter: Callable[..., hf.ModelAdapterHF]) -> None:
    adapter = make_tiny_adapter()
    assert isinstance(ask(adapter, QUESTIONS[:1], max_new_tokens=2)[0], str)
    model = weakref.ref(adapter.model)
    adapter.close()
    assert adapter.model is None and model() is None  # nothing else kept the weights alive
    with pytest.raises(RuntimeError, match="closed"):
        ask(adapter, QUESTIONS[:1])


@pytest.mark.parametrize("kwarg", ["dtype", "torch_dtype"])
def test_bf16_model_runs_sparse_attention_in_float32(
    make_tiny_adapter: Callable[..., hf.ModelAdapterHF],
    monkeypatch: pytest.MonkeyPatch,
    kwarg: str,
) -> None:
    """Both dtype spellings load bf16; sparse calls return bf16 computed in float32.

    Reference: the same streaming selection (4 sink + 16 local keys) in float64 from the call's
    own bf16 q/k/v, rounded to bf16 once. bf16 softmax arithmetic would be off by many bf16 steps.
    """
    from sparse_attention_hub.adapters import attention_backend

    calls: list[tuple[torch.Tensor, ...]] = []
    real = attention_backend.sparse_attention_forward

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kw: Any) -> Any:
        out = real(q, k, v, *args, **kw)
        calls.append((q, k, v, out))
        return out

    monkeypatch.setattr(attention_backend, "sparse_attention_forward", spy)
    adapter = make_tiny_adapter(model_kwargs={kwarg: "bfloat16"})
    assert adapter.describe()["dtype"] == "bfloat16"
    adapter.set_sparse_attention_config(STREAMING)
    ask(adapter, QUESTIONS[:1], max_new_tokens=2)
    adapter.close()
    q, k, v, out = calls[0]  # question prefill, layer 0
    assert q.dtype == k.dtype == v.dtype == out.dtype == torch.bfloat16
    n_q, n_k = q.shape[2], k.shape[2]
    rows = torch.arange(n_k - n_q, n_k)[:, None]
    cols = torch.arange(n_k)[None, :]
    keep = (cols <= rows) & ((cols < 4) | (cols > rows - 16))
    kk, vv = (x.double().repeat_interleave(2, dim=1) for x in (k, v))  # GQA: 4 heads, 2 KV heads
    logits = (q.double() @ kk.transpose(-1, -2)) / q.shape[-1] ** 0.5
    ref = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1) @ vv
    expected = ref.transpose(1, 2).to(torch.bfloat16).double()
    ulp = expected.abs().clamp_min(2**-14) * 2**-7
    assert ((out.double() - expected).abs() <= ulp).float().mean() > 0.99


def test_inputs_follow_a_device_map(
    make_tiny_adapter: Callable[..., hf.ModelAdapterHF], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a device_map, transformers places the model; inputs go where it put the embeddings."""
    real_load = hf.load_model

    def load_ignoring_device_map(source: Any, model_kwargs: Any) -> Any:
        assert model_kwargs["device_map"] == "auto"
        return real_load(source, {})  # the map would have placed everything on the CPU

    monkeypatch.setattr(hf, "load_model", load_ignoring_device_map)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    adapter = make_tiny_adapter(device="cuda:0", model_kwargs={"device_map": "auto"})
    monkeypatch.undo()
    assert adapter.device == torch.device("cpu") and adapter.describe()["device"] == "cpu"
    assert isinstance(ask(adapter, QUESTIONS[:1], max_new_tokens=2)[0], str)
    adapter.close()


def test_a_model_that_cannot_switch_attention_fails_at_construction(
    make_tiny_adapter: Callable[..., hf.ModelAdapterHF], monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import LlamaForCausalLM

    monkeypatch.setattr(
        LlamaForCausalLM, "_can_set_attn_implementation", classmethod(lambda cls: False)
    )
    with pytest.raises(NotImplementedError, match="cannot switch"):
        make_tiny_adapter()
