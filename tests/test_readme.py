"""The README's examples run as written (the YAML is planned; the Python runs on SmolLM2)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sparse_attention_hub.executor import plan, spec_from_dict

README = Path(__file__).resolve().parents[1] / "README.md"
SKELETON = "# file: "  # an extension's new module: compiled, not run (it would register twice)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_experiment_yaml_plans(tmp_path: Path) -> None:
    (experiment,) = [b for b in blocks("yaml") if b.startswith("# experiment.yaml")]
    spec = spec_from_dict(yaml.safe_load(experiment))
    jobs = plan(spec, tmp_path)
    assert len(jobs) == 3 * (1 + 2)  # 3 sparse configs x (mock_benchmark + 2 synthetic subsets)
    assert {job.sparse_name for job in jobs} == {"dense", "streaming", "topk_5pct"}
    assert all(job.state.value == "pending" for job in jobs)


def test_readme_extension_skeletons_compile() -> None:
    skeletons = [b for b in blocks("python") if b.startswith(SKELETON)]
    assert len(skeletons) == 2  # a masker and a benchmark
    for code in skeletons:
        compile(code, str(README), "exec")


@pytest.mark.e2e
def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    examples = [b for b in blocks("python") if not b.startswith(SKELETON)]
    assert len(examples) == 2
    for code in examples:
        exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "results/api_demo/results.csv").exists()
    assert (tmp_path / "results/one_job/metrics.json").exists()
