#!/usr/bin/env bash
# The GPU measurements of benchmarks/README.md, on a machine with one CUDA GPU, from the repository root:
#
#   bash benchmarks/gpu_checks.sh PEAK_TFLOPS OUT_DIR [steps|towers|trainer|all]
#
# `steps` (the paper step in six settings, three of them compiled: ~9 minutes on an H200), `towers` + the
# gradient-caching step, and `trainer` each fit one 10-minute device command; `all` (the default) runs them in turn.
# PEAK_TFLOPS is the GPU's dense bf16 peak the MFU column divides by (H100 / H200 SXM: 989 on the data sheet, ~790
# measured on the project's H200). On an offline machine without MedBind's dependencies (the project's GPU machine
# lacks transformers 5.23+, datasets and wfdb), first run `bash ../shared/device/prepare-wheels.sh` in the checkout
# that travels: this script installs .whl/ and MedBind itself into .site/ when .whl/ is there.
#
# Writes OUT_DIR/table.md (every table: one row per setting of the paper preset's step at batch 128, then the towers),
# OUT_DIR/measurements.json (all of them) and OUT_DIR/trainer.log (the Trainer's samples/s on the same model and
# batch).
set -euo pipefail
peak=${1:?the GPU dense bf16 peak in TFLOP/s}
out=${2:?an output folder}
part=${3:-all}
mkdir -p "$out"
json=$(mktemp -d)
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --upgrade --target .site .
  export PYTHONPATH=$PWD/.site:$PWD HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$out/table.md"

step() {  # name, options: the paper preset's training step (ECG patch 1, batch 128, reports at 128 tokens)
  echo -e "\n## $1\n" >> "$out/table.md"
  python3 benchmarks/bench_train_step.py --presets paper --ecg_patch_sizes 1 --device cuda --workloads train_step \
    --peak_tflops "$peak" --json "$json/$1.json" "${@:2}" 2>/dev/null | tee -a "$out/table.md"
}
if [[ $part == steps || $part == all ]]; then
step fp32-tf32
step bf16 --bf16
step bf16-eager-bert-attention --bf16 --attn_implementation eager
step bf16-channels-last --bf16 --channels_last
step bf16-compile --bf16 --compile
step bf16-compile-channels-last --bf16 --compile --channels_last
fi
if [[ $part == towers || $part == all ]]; then
step bf16-compile-chunks-of-32 --bf16 --compile --contrastive_chunk_size 32
echo -e "\n## towers, bf16, ECG patch 1 and 10\n" >> "$out/table.md"
python3 benchmarks/bench_train_step.py --presets paper --ecg_patch_sizes 1 10 --device cuda --bf16 \
  --peak_tflops "$peak" --json "$json/towers.json" 2>/dev/null | tee -a "$out/table.md"
fi
python3 - "$json" "$out/measurements.json" <<'EOF'
import json, sys
from pathlib import Path
runs = {path.stem: json.loads(path.read_text()) for path in sorted(Path(sys.argv[1]).glob("*.json"))}
Path(sys.argv[2]).write_text(json.dumps(runs, indent=1) + "\n")
EOF

[[ $part == trainer || $part == all ]] || exit 0
# The Trainer on the same model and batch: random towers (no download), synthetic demo data, bf16, fused AdamW,
# the default loader workers; its train_samples_per_second (slots per second) sits beside the benchmark's samples/s.
python3 -m medbind_processing.demo --out "$json/demo-data" --num_patients 4000 > /dev/null
python3 training/pretrain.py --preset paper --text_backbone none --cxr_backbone none --dataset_dir "$json/demo-data" \
  --output_dir "$json/trainer" --bf16 true --per_device_train_batch_size 128 --max_steps 60 --eval_strategy no \
  --save_strategy no --load_best_model_at_end false --logging_steps 20 --report_to none > "$out/trainer.log" 2>&1 || true
grep -E "contrastive batch|train_samples_per_second|train_runtime|Error" "$out/trainer.log" | tee -a "$out/table.md"
