#!/usr/bin/env bash
# GPU smoke test of the executor on a CUDA machine; a few minutes on one GPU once the venv exists.
#   benchmarks/gpu_smoke.sh                         # sets up or reuses .venv (scripts/env.sh)
#   PYTHON=/opt/env/bin/python benchmarks/gpu_smoke.sh   # an environment with the project in it
#   GPUS=0,1 benchmarks/gpu_smoke.sh                # 2 workers on each listed GPU (default: 0)
# Checks (the checks themselves are in benchmarks/gpu_smoke.py):
# 1. pinning: 2 workers per GPU, each process starts seeing exactly its own device (as cuda:0),
#    and jobs of both workers run on one GPU at the same time;
# 2. OOM: a job that allocates 60% of the GPU past its worker's 40% memory fraction fails as
#    `cuda_oom` (a real torch.OutOfMemoryError, retried once) while its neighbours complete;
# 3. SmolLM2-135M (dense + streaming, mock_benchmark) on 2 workers of one GPU, weights on it;
# 3b. shared prefill: SmolLM2 x {dense, streaming, oracle_topk} x ruler_synthetic niah_single_1 at
#    4096 tokens, 2 samples, one worker, once as one bundle and once one job per dispatch: the
#    bundle prefills each context once (2 prefills, not 6) and answers exactly as the other run;
# 4. long context (benchmarks/gpu_longctx.py): a random-weight Llama (4 layers, GQA 8/2 heads) at
#    64k and 128k tokens, dense + streaming + oracle_topk on the first GPU: peak memory per run,
#    ms per decode step, CUDA syncs per step (LONGCTX_KEYS="65536 131072" to change the lengths).
# Ends with `gpu_smoke: PASS` (exit 0) or `gpu_smoke: FAIL at <step>` (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
GPUS="${GPUS:-0}"
WORK="${SMOKE_DIR:-$(mktemp -d -t sah-gpu-smoke-XXXX)}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1  # nothing is downloaded at run time
STEP="environment"
PASSED=()
finish() {
  local rc=$?
  echo
  for line in "${PASSED[@]}"; do echo "  ok  $line"; done
  if [ "$rc" -eq 0 ]; then
    echo "gpu_smoke: PASS (${#PASSED[@]} steps; work dir $WORK)"
  else
    echo "gpu_smoke: FAIL at $STEP (exit $rc; work dir $WORK)" >&2
  fi
}
trap finish EXIT

if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
else
  source scripts/env.sh  # creates or reuses .venv; torch==2.13.0 from PyPI is a CUDA build on Linux
  PY="$VIRTUAL_ENV/bin/python"
fi
"$PY" - "$GPUS" <<'PY'
import sys
import torch
gpus = [int(g) for g in sys.argv[1].split(",")]
if torch.version.cuda is None:
    sys.exit(f"torch {torch.__version__} is a CPU-only build; install a CUDA build of torch==2.13.0")
if not torch.cuda.is_available() or max(gpus) >= torch.cuda.device_count():
    sys.exit(f"need CUDA device(s) {gpus}; torch sees {torch.cuda.device_count()}")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}):",
      ", ".join(torch.cuda.get_device_name(g) for g in gpus))
PY
PASSED+=("environment: $("$PY" -c 'import torch; print(torch.__version__)') with CUDA")
echo "gpu_smoke: GPU(s) $GPUS, work dir $WORK"

STEP="prepare"
rm -rf "$WORK/pinning" "$WORK/real" "$WORK/bundled" "$WORK/separate"  # a reused SMOKE_DIR starts afresh (the model cache stays)
"$PY" benchmarks/gpu_smoke.py prepare "$WORK" --gpus "$GPUS"

STEP="pinning + oom run"
set +e
timeout 300 "$PY" -m sparse_attention_hub.cli.main run "$WORK/pinning.yaml" --no-progress
rc=$?
set -e
if [ "$rc" -ne 1 ]; then echo "expected exit 1 (only the oom job fails), got $rc" >&2; exit 1; fi
STEP="pinning + oom checks"
"$PY" benchmarks/gpu_smoke.py pinning "$WORK" --gpus "$GPUS" | tee "$WORK/pinning.txt"
while IFS= read -r line; do PASSED+=("${line#PASS }"); done <"$WORK/pinning.txt"

STEP="smollm2 run"
timeout 420 "$PY" -m sparse_attention_hub.cli.main run "$WORK/real.yaml" --no-progress \
  --job-timeout 300
STEP="smollm2 checks"
"$PY" benchmarks/gpu_smoke.py real "$WORK" --gpus "$GPUS" | tee "$WORK/real.txt"
while IFS= read -r line; do PASSED+=("${line#PASS }"); done <"$WORK/real.txt"
"$PY" -m sparse_attention_hub.cli.main status "$WORK/real/results"

STEP="shared prefill runs"
for run in bundled separate; do
  timeout 420 "$PY" -m sparse_attention_hub.cli.main run "$WORK/$run.yaml" --no-progress \
    --job-timeout 300
done
STEP="shared prefill checks"
"$PY" benchmarks/gpu_smoke.py bundled "$WORK" --gpus "$GPUS" | tee "$WORK/bundled.txt"
while IFS= read -r line; do PASSED+=("${line#PASS }"); done <"$WORK/bundled.txt"

STEP="long context"
GPU0="${GPUS%%,*}"
# shellcheck disable=SC2086  # LONGCTX_KEYS is a list of numbers
timeout 900 "$PY" benchmarks/gpu_longctx.py --device "cuda:$GPU0" \
  --keys ${LONGCTX_KEYS:-65536 131072} | tee "$WORK/longctx.txt"
while IFS= read -r line; do
  case "$line" in "PASS "*) PASSED+=("${line#PASS }") ;; esac
done <"$WORK/longctx.txt"
STEP="done"
