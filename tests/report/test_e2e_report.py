"""The quickstart-sized matrix on the tiny Llama, interrupted, resumed, reported, rendered.

`sah run` (9 jobs: 3 configs x mock_benchmark, a synthetic RULER task and a LongBench subset whose
local file is broken: a real `dataset` failure) is stopped with Ctrl-C after its first job and
run again; one finished job's metrics.json is then torn (corrupt). `sah report` must show every
state, change nothing in the tree, and the page must render in headless Chromium; the screenshot
is kept (and copied to $SAH_TEST_ARTIFACTS when set). Without Chromium this test fails: .ci/run
installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from sparse_attention_hub.executor.testing import read_events

from .test_build import snapshot

SAH = [sys.executable, "-m", "sparse_attention_hub.cli.main"]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS_ENV = "SAH_TEST_ARTIFACTS"


def screenshot(page: Path, out: Path, width: int = 1280, height: int = 4200) -> Path:
    """Render `page` in headless Chromium (fresh profile, no network features) to a PNG."""
    binary = shutil.which("chromium") or CHROMIUM
    assert Path(binary).exists(), f"{CHROMIUM} is missing: .ci/run installs Debian's chromium"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size={width},{height}",
                f"--screenshot={out}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    return out


def experiment(tmp_path: Path, model: Path) -> dict[str, object]:
    broken = tmp_path / "longbench"
    broken.mkdir()
    (broken / "hotpotqa.jsonl").write_text('{"title": "no context, no question"}\n')
    return {
        "models": [str(model)],
        "sparse_configs": {"dense": None, "streaming": "streaming", "oracle_topk": "oracle_topk"},
        "benchmarks": [
            {"name": "mock_benchmark"},
            {
                "name": "ruler_synthetic",
                "subsets": ["niah_single_1"],
                "options": {
                    "context_lengths": [256],
                    "num_samples": 8,  # the interrupt must land before the last job ends
                    "cache_dir": str(tmp_path / "ruler_cache"),
                },
            },
            {"name": "longbench", "subsets": ["hotpotqa"], "data_path": str(broken)},
        ],
        "generation_kwargs": {"max_new_tokens": 4},
        "result_dir": str(tmp_path / "results"),
        # one job per dispatch: work is left after the first job ends (a bundle's jobs end
        # together, and the tiny model finished the rest before the SIGINT landed)
        "execution": {"max_concurrent_runs": 1, "max_retries": 0, "share_prefill": False},
    }


def sah(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SAH, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.e2e
def test_interrupted_resumed_run_reports_and_renders(tmp_path: Path, tiny_llama_dir: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment(tmp_path, tiny_llama_dir)))
    results = tmp_path / "results"
    first = sah("run", str(exp), "--no-progress")
    deadline = time.monotonic() + 300
    while not any(e["event"] == "job_finished" for e in read_events(results)):
        assert first.poll() is None and time.monotonic() < deadline, "no job finished"
        time.sleep(0.2)
    first.send_signal(signal.SIGINT)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out
    second = sah("run", str(exp), "--no-progress")
    out, _ = second.communicate(timeout=600)
    assert second.returncode == 1, out  # the broken LongBench file fails its jobs
    assert "9 jobs: 6 complete, 3 failed" in out, out

    torn = next(results.glob("*/streaming/ruler_synthetic_niah_single_1/metrics.json"))
    torn.write_text(torn.read_text()[:40])
    before = snapshot(results)
    report = subprocess.run(
        [*SAH, "report", str(results), "--open"], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert snapshot(results) == before  # the report wrote only under results/report/
    index = results / "report" / "index.html"
    assert index.resolve().as_uri() in report.stdout
    page = index.read_text()
    assert page.count("class='failed'") == 3 and "[dataset]" in page
    assert page.count("class='corrupt'") == 1 and "metrics.json does not parse" in page
    assert page.count("data:image/png;base64,") >= 3  # no kept heatmap: dense scored 0

    image = screenshot(index, tmp_path / "report.png")
    pixels = matplotlib.image.imread(image)
    assert pixels.shape[1] == 1280 and pixels[..., :3].std() > 0.05  # a page, not a blank sheet
    artifacts = os.environ.get(ARTIFACTS_ENV)
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(image, Path(artifacts) / "report_e2e.png")
        shutil.copy(index, Path(artifacts) / "report_e2e.html")
