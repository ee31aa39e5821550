#!/usr/bin/env bash
# Continue training the embedded default model on one GPU for a fixed time, then calibrate its
# threshold and export it: all that one call of a borrowed GPU machine (about 10 minutes, 16 cores)
# can hold, in one script that leaves the result in one folder.
#
#   bash scripts/gpu_finetune_default.sh [TRAIN_MINUTES] [OUT]
#
# 1. Scenes from the four training sections of configs/default_synth.yaml (train, train_wide,
#    train_wider, train_looks; seeds from 30,000,000 on, which no held-out or earlier training set
#    uses), SCENES per section (default 120; twice that of train_looks, whose looks are drawn at
#    random) and 8 validation scenes each, generated on every core.
# 2. `bilayer finetune` of the shipped model with configs/default_train_gpu.yaml (128³ patches in
#    batches of 8) for TRAIN_MINUTES (default 5) of wall-clock time (`--time-limit`).
# 3. The threshold, calibrated on the validation scenes (scripts/calibrate_threshold.py), folded
#    into the exported model: OUT/bilayer_default.bilayer.pt (OUT defaults to $OUT, else runs/gpu),
#    beside metrics.csv, curves.png and threshold.txt. The shipped model is not replaced: measure
#    the new one on the held-out sets first (docs/model_card.md), then copy it over.
#
# A dry run on a CPU (1.5 minutes on 2 cores):
#   SCENES=2 VAL=1 TRAIN_ARGS="--patch-size 64 --batch-size 2 --no-compile" \
#       bash scripts/gpu_finetune_default.sh 0.5 /tmp/dry
# On the device machine of this project's tool (Python 3.12 with torch; monai, mrcfile and nibabel
# carried as wheels in .whl/, see docs/model_card.md), one call with carry [".whl"]:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   && bash scripts/gpu_finetune_default.sh 5
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-5}
out=$(mkdir -p "${2:-${OUT:-runs/gpu}}" && cd "${2:-${OUT:-runs/gpu}}" && pwd)
scenes=${SCENES:-120} val=${VAL:-8} data=${DATA:-$PWD/data/gpu}
cores=$(nproc) py=${PYTHON:-python3}
"$py" -c "import bilayer" 2>/dev/null || export PYTHONPATH=$PWD/core${PYTHONPATH:+:$PYTHONPATH}
synth=configs/default_synth.yaml
source scripts/mix_datasets.sh
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started )) s] $*"; }

say "generating $((5 * scenes)) training and $((4 * val)) validation scenes on $cores cores"
"$py" scripts/make_synthetic_dataset.py $synth "$data/train" --train "$scenes" --val "$val" \
    --seed 30000000 --workers "$cores" > "$out/data.log"
"$py" scripts/make_synthetic_dataset.py $synth "$data/wide" --section train_wide --train "$scenes" --val "$val" \
    --seed 32000000 --workers "$cores" --resample-to 10 >> "$out/data.log"
"$py" scripts/make_synthetic_dataset.py $synth "$data/wider" --section train_wider --train "$scenes" \
    --val "$val" --seed 34000000 --workers "$cores" --resample-to 10 >> "$out/data.log"
"$py" scripts/make_synthetic_dataset.py $synth "$data/looks" --section train_looks --train "$((2 * scenes))" \
    --val "$val" --seed 36000000 --workers "$cores" --resample-to 10 >> "$out/data.log"
mix "$data/mix" "$data/train" "$data/wide" "$data/wider" "$data/looks"  # one dataset of links, prefixed by section

say "fine-tuning for $minutes minutes"
# shellcheck disable=SC2086  # TRAIN_ARGS holds several options
"$py" -m bilayer finetune "$data/mix" --model core/bilayer/model/weights/bilayer_default.bilayer.pt \
    --config configs/default_train_gpu.yaml --time-limit "$minutes" --workers $((cores > 2 ? cores - 2 : 1)) \
    --out "$out/run" ${TRAIN_ARGS:-} 2>&1 | grep -v "step .*/.*s per step" | tee "$out/train.log"
cp "$out/run/metrics.csv" "$out/run/curves.png" "$out/"

say "calibrating the threshold on the validation scenes"
"$py" -m bilayer segment "$data/mix/imagesVal"/*.mrc --model "$out/run/best.bilayer.pt" --out "$out/val" \
    --no-tta --no-preview --scores --overwrite > "$out/val.log"
"$py" scripts/calibrate_threshold.py "$out/val" "$data/mix/labelsVal" > "$out/threshold.txt"
threshold=$(awk '/^best threshold/ {print $NF}' "$out/threshold.txt")
"$py" scripts/export_default_model.py "$out/run/best.bilayer.pt" --threshold "$threshold" \
    --name "bilayer default model (GPU fine-tune of v4, $minutes min)" --out "$out/bilayer_default.bilayer.pt"
say "done: $out/bilayer_default.bilayer.pt, threshold $threshold"
