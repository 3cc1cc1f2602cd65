#!/usr/bin/env bash
# GPU smoke test, for a machine with CUDA: train, evaluate, generate (greedy, beam, int8 weights), FSDP over the
# GPUs present, and serving 16 clients — every step on the GPU, each printing its result. Run from the repository
# root after `make test` (or with lmforge installed):   bash bench/gpu_smoke.sh
set -euo pipefail
PY=${PY:-.venv/bin/python}
LMF="$PY -m lmforge.cli"
OUT=${OUT:-$(mktemp -d /tmp/gpu-smoke-XXXX)}
DATA=${DATA:-$( [ -d ../shared/data/sst2 ] && echo ../shared/data || echo shared/data )}
step() { echo; echo "== $* =="; }

step "device"
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0), torch.version.cuda, 'bf16' if torch.cuda.is_bf16_supported() else 'no bf16')"

step "train MiniLM on 20k SST-2 sentences (--device cuda, precision auto)"
$LMF train examples/sst2.yaml "data.train=$DATA/sst2/train.tsv" "data.validation.path=$DATA/sst2/dev.tsv" \
    "train.output_dir=$OUT/sst2" train.tensorboard=false --device cuda

step "evaluate the run on the GPU"
$LMF evaluate "$OUT/sst2" --device cuda

step "generate: greedy, beam 4, int8 weights (SmolLM2, --device cuda)"
for args in "" "--strategy beam --num-beams 4" "--weights int8" "--weights bf16"; do
    # shellcheck disable=SC2086
    $LMF generate smollm2-135m-instruct --prompt "Why is the sky blue?" --max-new-tokens 32 --device cuda $args
done

step "FSDP full fine-tuning over every GPU (2 epochs of 2,000 SST-2 sentences)"
GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -ge 2 ]; then
    $PY -m accelerate.commands.launch --multi_gpu --num_processes "$GPUS" -m lmforge.cli train examples/sst2.yaml \
        "data.train=$DATA/sst2/train.tsv" "data.validation.path=$DATA/sst2/dev.tsv" data.max_train_samples=2000 \
        train.epochs=2 train.fsdp=true "train.output_dir=$OUT/fsdp" train.tensorboard=false
else
    echo "one GPU: FSDP needs two processes (skipped here; tests/train/test_distributed.py runs it on CPUs)"
fi

step "serve: 16 clients against continuous batching on the GPU"
$PY bench/serve_load.py --clients 16 --requests 2 --tokens 32

step "decode speed on the GPU (HF generate vs lmforge)"
$PY bench/decode_speed.py --runs 2 --modes greedy,beam4,batch16 --device cuda

echo; echo "gpu smoke: all steps ran; outputs in $OUT"
