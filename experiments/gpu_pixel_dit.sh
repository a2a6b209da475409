#!/usr/bin/env bash
# Train the Pixel DiT decoder (configs/tokenizer/shapes-pixel-dit-decoder.yaml) on a lent GPU
# machine that has torch but no package index, on the fixed tokens of runs/gpu/tokenizer, and
# pack it into $OUT for evaluation here. Carry: .whl, runs/gpu/tokenizer, runs/gpu/teacher.
#
#   bash experiments/gpu_pixel_dit.sh [arm-tokenizer fit overrides...]
#
# Before the call, build the wheels as gpu_reproduce.sh says. After it:
#   mkdir -p runs/gpu/tokenizer-dit && cp $FILES/tokenizer-dit/config.json runs/gpu/tokenizer-dit/
#   cat $FILES/dit.safetensors.part-* > runs/gpu/tokenizer-dit/model.safetensors
set -u
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" runs
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --force-reinstall .whl/*.whl || exit 1
# the config names runs/tokenizer and runs/teacher, as make reproduce lays them out
ln -sfn gpu/tokenizer runs/tokenizer
ln -sfn gpu/teacher runs/teacher
export PYTHONUNBUFFERED=1
start=$(date +%s)
workers=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))
python3 -m arm_tokenizer.cli fit --config configs/tokenizer/shapes-pixel-dit-decoder.yaml \
    --data.init_args.num_workers "$workers" "$@" 2>&1 | tr '\r' '\n' | grep -v -E "it/s|s/it" \
    | tail -40 | tee "$OUT/fit.log"
echo "fit exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
mkdir -p "$OUT/tokenizer-dit"
cp runs/tokenizer-dit/config.json "$OUT/tokenizer-dit/" 2>/dev/null
split -b 15M runs/tokenizer-dit/model.safetensors "$OUT/dit.safetensors.part-" 2>/dev/null
tar czf "$OUT/dit_logs.tgz" runs/tokenizer-dit-logs 2>/dev/null   # TensorBoard curves
ls -la "$OUT"
