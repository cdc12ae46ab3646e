#!/usr/bin/env bash
# `iprof demo` with SmolLM2 on each CPU engine, as the README's LLM command runs it: a fresh
# data folder each, the transformers conversion copied in beforehand (made once, not timed).
# Prints each engine's wall time, the demo's own summary and the LLM's per-batch lines.
#   bash scripts/bench/demo_llm_engines.sh        # from the repository root, after make setup
set -euo pipefail
models=data/models
if [ ! -d "$models" ]; then
  echo "no $models: run e.g. scripts/bench/bench_llm_engines.py once (it converts SmolLM2)" >&2
  exit 2
fi
for backend in transformers llama-cpp; do
  work=$(mktemp -d)
  mkdir -p "$work/data" && cp -r "$models" "$work/data/"
  started=$(date +%s.%N)
  IPROF_DATA_DIR="$work/data" IPROF_INDEX_DIR="$work/index" IPROF_LLM_MODEL=smollm2 \
    IPROF_LLM_BACKEND="$backend" HF_HUB_OFFLINE=1 .venv/bin/iprof demo >"$work/out" 2>"$work/err"
  ended=$(date +%s.%N)
  echo "== $backend: $(echo "$ended - $started" | bc) s"
  cat "$work/out"
  grep "windows written" "$work/err" || true
  rm -rf "$work"
done
