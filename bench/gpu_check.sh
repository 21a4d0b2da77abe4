#!/usr/bin/env bash
# Every GPU check we have, in one run on one GPU (budget: under 8 minutes), ending with one table:
#   the notebooks' `#| gpu` cells (nbdev_test --flags gpu), every bench/*.py with --device cuda (AMP, full-size
#   networks' training steps, loaders, Algorithm 1), and the trainer under torchrun with NCCL.
# Usage: bash bench/gpu_check.sh [LOG_DIR]   (per-check logs in LOG_DIR, default $OUT or /tmp/gpu_check)
set -u
cd "$(dirname "$0")/.."
logs=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$logs"
summary="$logs/summary.tsv"
: > "$summary"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

check() {  # check NAME LIMIT_S COMMAND...: run with a time limit, keep its log, record status, time and last SUMMARY line
  local name=$1 limit=$2; shift 2
  local log="$logs/$(echo "$name" | tr ' /' '__').log" t0=$(date +%s)
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$? dt=$(( $(date +%s) - t0 ))
  local status=ok; [ $rc -eq 124 ] && status=timeout; [ $rc -ne 0 ] && [ $rc -ne 124 ] && status="fail($rc)"
  local note=$(grep -h "^SUMMARY" "$log" | tail -1 | cut -c9-)
  [ -z "$note" ] && note=$(tail -1 "$log" | cut -c1-110)
  printf "%s\t%s\t%s\t%s\n" "$name" "$status" "$dt" "$note" >> "$summary"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$logs/gpu.txt" 2>&1
check "nbdev_test --flags gpu" 240 nbdev_test --flags gpu --n_workers 1
for b in bench/*.py; do
  case "$b" in bench/train_gpu.py) continue;; esac
  check "$b --device cuda" 120 python "$b" --device cuda
done
check "bench/train_gpu.py fp32 vs AMP" 120 python bench/train_gpu.py --device cuda
check "trainer under torchrun (NCCL)" 90 torchrun --standalone --nproc_per_node 1 bench/train_gpu.py --device cuda --ddp-only --epochs 2

echo
echo "GPU: $(cat "$logs/gpu.txt")"
python - "$summary" <<'PY'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
w = max(len(r[0]) for r in rows)
print(f"| {'check'.ljust(w)} | status | s | result |\n|{'-' * (w + 2)}|--------|---|--------|")
for name, status, secs, note in rows: print(f"| {name.ljust(w)} | {status} | {secs} | {note} |")
PY
