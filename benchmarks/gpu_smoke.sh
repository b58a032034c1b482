#!/usr/bin/env bash
# GPU smoke test of the executor, for a machine with CUDA devices (run from the repo root):
#   benchmarks/gpu_smoke.sh            # uses .venv/bin/python, or PYTHON=... to choose
# 1. pinning: 2 workers per GPU, each sees exactly one device (CUDA_VISIBLE_DEVICES set before
#    torch initialises CUDA), jobs spread over every GPU;
# 2. OOM: a job that allocates past its worker's memory fraction fails as `cuda_oom` (a real
#    torch.OutOfMemoryError) while its neighbours on the same GPU complete;
# 3. a real model (SmolLM2-135M, dense + streaming, mock_benchmark) on 2 workers per GPU, every
#    weight on the worker's own device.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
WORK="${SMOKE_DIR:-$(mktemp -d -t sah-gpu-smoke-XXXX)}"
N=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$N" -lt 1 ]; then echo "gpu_smoke: no CUDA device visible" >&2; exit 1; fi
echo "gpu_smoke: $N GPU(s), work dir $WORK"

"$PY" - "$WORK" "$N" <<'PY'
import json, sys
from pathlib import Path
import torch, yaml
from sparse_attention_hub.executor.testing import experiment

work, n = Path(sys.argv[1]), int(sys.argv[2])
total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
sparse = [f"s{i}" for i in range(4 * n)] + ["oom"]
faults = {"/oom/": {"action": "allocate", "gb": 0.6 * total_gb, "times": 9}}
data = experiment(work / "pinning", sparse=sparse, faults=faults, delay_s=0.5)
data["execution"] = {"gpu_ids": list(range(n)), "max_concurrent_runs": 2 * n,
                     "gpu_memory_fraction": 0.4, "max_retries": 1}
(work / "pinning.yaml").write_text(yaml.safe_dump(data))
real = {
    "models": ["smollm2-135m-instruct"],
    "sparse_configs": {"dense": None, "streaming": "streaming"},
    "benchmarks": [{"name": "mock_benchmark"}],
    "generation_kwargs": {"max_new_tokens": 16},
    "result_dir": str(work / "real" / "results"),
    "execution": {"gpu_ids": list(range(n)), "max_concurrent_runs": 2 * n},
}
(work / "real.yaml").write_text(yaml.safe_dump(real))
PY

echo "== 1+2: pinning, 2 workers per GPU, OOM categorised"
set +e
"$PY" -m sparse_attention_hub.cli.main run "$WORK/pinning.yaml" --no-progress
rc=$?
set -e
[ "$rc" -eq 1 ] || { echo "expected exit 1 (the oom job fails), got $rc" >&2; exit 1; }

"$PY" - "$WORK" "$N" <<'PY'
import json, sys
from collections import Counter
from pathlib import Path
from sparse_attention_hub.executor.testing import read_events

work, n = Path(sys.argv[1]), int(sys.argv[2])
results = work / "pinning" / "results"
events = read_events(results)
devices = Counter(e["device"] for e in events if e["event"] == "worker_started")
assert devices == Counter({f"cuda:{i}": 2 for i in range(n)}), devices
probes = [json.loads(p.read_text()) for p in results.glob("*/*/*/device.json")]
assert probes and all(p["device_count"] == 1 for p in probes), probes
seen = Counter(p["CUDA_VISIBLE_DEVICES"] for p in probes)
assert set(seen) == {str(i) for i in range(n)}, seen  # every GPU got work
manifests = [json.loads(p.read_text()) for p in results.glob("*/*/*/manifest.json")]
assert len(manifests) == 4 * n, len(manifests)
for m in manifests:  # the device a job recorded is the one its worker process was pinned to
    probe = json.loads((results / m["job_id"] / "device.json").read_text())
    assert m["device"] == f"cuda:{probe['CUDA_VISIBLE_DEVICES']}", (m, probe)
failure = json.loads(next(results.glob("*/oom/*/failure.json")).read_text())
assert failure["category"] == "cuda_oom", failure
assert failure["exc_type"] == "torch.OutOfMemoryError", failure
print(f"pinning ok: workers per device {dict(devices)}; jobs per device {dict(seen)}")
print(f"oom ok: {failure['category']} after {len(failure['attempts'])} attempts; neighbours complete")
PY

echo "== 3: SmolLM2 on 2 workers per GPU"
"$PY" -m sparse_attention_hub.cli.main run "$WORK/real.yaml" --no-progress
"$PY" - "$WORK" <<'PY'
import json, sys
from pathlib import Path
from sparse_attention_hub.executor.testing import read_events

results = Path(sys.argv[1]) / "real" / "results"
manifests = [json.loads(p.read_text()) for p in results.glob("*/*/*/manifest.json")]
assert len(manifests) == 2 and all(m["device"].startswith("cuda:") for m in manifests), manifests
loads = [e for e in read_events(results) if e["event"] == "model_loaded"]
print("real model ok:", [(m["sparse_config"], m["device"], round(m["duration_s"], 1)) for m in manifests],
      f"{len(loads)} model load(s)")
PY
"$PY" -m sparse_attention_hub.cli.main status "$WORK/real/results"
echo "gpu_smoke: all checks passed"
