#!/usr/bin/env bash
# One prepared run for a device session (see README, "GPU"): install what the device lacks from carried wheels
# (.whl/), run the CUDA tests, benchmark training throughput, train on the GPU preset for a short time budget,
# evaluate, benchmark decoding; with REF=path/to/ref_nn_transformer.py (carried into the repo), also run the
# tutorial-style reference beside it for REF_SECONDS. Figures go to $OUT (JSON and logs).
# Usage: OUT=/tmp/out MINUTES=2 bash scripts/gpu_check.sh  (about 5 minutes with MINUTES=2 and no REF)
# Prepare here first (both folders git-ignored via .git/info/exclude, named in the device run's `carry`):
#   .gpu/multi30k/  <- ../shared/data/multi30k/*.{de,en}     .gpu/ref_nn_transformer.py <- ../shared/bench/
#   .whl/           <- pip download (py3.12, manylinux) of datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
#                      fsspec==2026.9.0 (the device has torch, sentencepiece, sacrebleu, typer, pyarrow)
set -uo pipefail
OUT=${OUT:-/tmp/mtx-gpu}
MINUTES=${MINUTES:-2}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export HF_HOME=/tmp/hf PYTHONUNBUFFERED=1
[ -d .gpu/multi30k ] && export MTX_DATA=$PWD/.gpu/multi30k
mtx() { python3 -m mtx "$@"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, datasets, sacrebleu; print('torch', torch.__version__, 'datasets', datasets.__version__)"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_search.py tests/test_model.py 2>&1 | tail -5 | tee "$OUT/pytest.txt"
mtx bench train --device cuda | tee "$OUT/bench_train.jsonl"
mtx bench train --device cuda --set model.enc_layers=3 --batch-tokens 4096 | tee -a "$OUT/bench_train.jsonl"
if [ -n "${REF:-}" ]; then
  python3 "$REF" --src de --tgt en --time-budget "${REF_SECONDS:-150}" --device cuda --data-dir "$MTX_DATA" \
    > "$OUT/ref.log" 2>&1; tail -1 "$OUT/ref.log" | tee "$OUT/ref.json"
fi
mtx train --device cuda --time-budget "$MINUTES" --out /tmp/gpu-model > "$OUT/train.json" 2> "$OUT/train.log"
tail -4 "$OUT/train.log"; cat "$OUT/train.json"
mtx evaluate --model /tmp/gpu-model --device cuda --beam 5 --output "$OUT/test.hyp.en" | tee "$OUT/evaluate.txt"
mtx bench decode --model /tmp/gpu-model --device cuda --beam 5 | tee "$OUT/bench_decode.jsonl"
mtx bench decode --model /tmp/gpu-model --device cuda --beam 5 --precision fp32 --settings greedy,beam | tee -a "$OUT/bench_decode.jsonl"
cp /tmp/gpu-model/train_log.jsonl "$OUT/" 2>/dev/null
