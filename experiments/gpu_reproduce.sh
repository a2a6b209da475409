#!/usr/bin/env bash
# `make reproduce-gpu`'s training stages on a lent GPU machine that has torch but no package
# index, in one call: install the carried wheels (.whl: our four packages + the pure-Python
# dependencies the machine lacks), run scripts/demo.py --profile gpu up to the LM, and pack
# what the CPU side evaluates (tokenizer, teacher, LM, stage records, logs) into $OUT.
#
#   bash experiments/gpu_reproduce.sh [demo.py arguments...]
#   RUN=runs/gpu-local bash experiments/gpu_reproduce.sh --config tokenizer=configs/tokenizer/shapes-local.yaml
#
# DECODER_FT=<config> then fine-tunes the exported tokenizer's decoder on its fixed tokens
# (paths moved under $RUN, DECODER_FT_S seconds, batch 64) into $RUN/tokenizer-ft; the LM stays
# valid for it (benchmarks/results/gpu_local.md):
#   RUN=runs/gpu-local DECODER_FT=configs/tokenizer/shapes-local-decoder-finetune.yaml \
#       bash experiments/gpu_reproduce.sh --config tokenizer=configs/tokenizer/shapes-local.yaml
#
# Before the call, here: build our wheels (pip wheel --no-deps --no-build-isolation
# packages/arm-* -w .whl) and download, for the machine's Python, the ones it lacks
# (jsonargparse docstring_parser typeshed_client vector-quantize-pytorch einx frozendict loguru
# torch-einops-utils lpips; pip download --no-deps --only-binary=:all: --python-version 3.12).
# After it: untar gpu.tgz into runs/, then cat lm.safetensors.part-* > $RUN/lm/model.safetensors.
# Evaluation (eval_tokenizer, eval_sft) then runs on any machine, with the same --out (and --config):
#   python scripts/demo.py --profile gpu --out runs/gpu --only eval_tokenizer eval_sft
set -u
OUT=${OUT:-/tmp/gpu-out}
RUN=${RUN:-runs/gpu}   # under runs/: the archive holds runs/$(basename RUN)
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --force-reinstall .whl/*.whl || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cpus', __import__('os').cpu_count())"
export PYTHONUNBUFFERED=1
start=$(date +%s)
# Lightning's progress bars (\r updates) stay out of the returned log.
no_bars() { tr '\r' '\n' | grep -v -E "it/s|s/it"; }
timeout "${BUDGET_S:-560}" python3 scripts/demo.py --profile gpu --out "$RUN" \
    --only teacher tokenizer tokens lm "$@" 2>&1 | no_bars | tee "$OUT/demo.log"
echo "demo exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
if [ -n "${DECODER_FT:-}" ] && [ -f "$RUN/tokenizer/config.json" ]; then
    ft_s=${DECODER_FT_S:-110}
    timeout $(( ft_s + 60 )) arm-tokenizer fit --config "$DECODER_FT" \
        --trainer.accelerator gpu --trainer.max_time "$(printf '00:00:%02d:%02d' $((ft_s / 60)) $((ft_s % 60)))" \
        --trainer.default_root_dir "$RUN/tokenizer-ft-logs" \
        --model.init_args.init_from "$RUN/tokenizer" --model.init_args.export_dir "$RUN/tokenizer-ft" \
        --model.init_args.encoder.init_args.checkpoint_path "$RUN/teacher/image_tower.safetensors" \
        --data.init_args.batch_size 64 --data.init_args.num_workers 12 \
        2>&1 | no_bars | tail -5 | tee -a "$OUT/demo.log"
    echo "decoder fine-tune exit ${PIPESTATUS[0]} after $(( $(date +%s) - start )) s"
fi
# The LM's weights (22 MB) travel split in two; everything else in one archive.
tar czf "$OUT/gpu.tgz" --exclude='*.ckpt' --exclude='tokens/shard-*' --exclude='lm/model.safetensors' \
    -C runs "$(basename "$RUN")" 2>/dev/null
if [ -f "$RUN/lm/model.safetensors" ]; then
    split -b 15M "$RUN/lm/model.safetensors" "$OUT/lm.safetensors.part-"
fi
ls -la "$OUT"
