#!/usr/bin/env bash
# One prepared run for a device session (see README, "GPU"): install what the device lacks from carried wheels
# (.whl/), run the CUDA tests, benchmark training throughput (mtx and, with REF, the tutorial-style reference
# on the same d512 3+3 model and 4096-token batches), train the GPU preset for MINUTES, evaluate with beam 5,
# benchmark decoding. Figures go to $OUT: one file per step and summary.json with the headline numbers.
# Prepare here with `make gpu-prep` (fills the git-ignored .gpu/ and .whl/), then in the device call:
#   carry [".gpu", ".whl"], command: OUT=$OUT REF=.gpu/ref_nn_transformer.py bash scripts/gpu_check.sh
# About 6 minutes with MINUTES=2 and REF_SECONDS=60 (the reference also decodes REF_TEST sentences).
# COMPILE=1 adds a `--compile` throughput line. SWEEP="model.dropout=0.4|model.enc_layers=3 train.average=0" also
# trains each variant (space-separated --set overrides on the GPU preset) for MINUTES and scores it on val (for
# choosing) and test (sweep.jsonl): about MINUTES + 0.7 minutes each; ONLY_SWEEP=1 runs just those (one device
# command may run 10 minutes: the full check plus more than one variant does not fit). SWEEP_PARALLEL=1 trains the
# variants at the same time; SWEEP_STEPS=N trains each for N steps instead of MINUTES (so that contention changes
# the time taken, not the training); SWEEP_TIMEOUT=S stops a variant (it is still scored). A dry run on a CPU:
#   PATH=.venv/bin:$PATH OUT=/tmp/dry WHEELS=none DEVICE=cpu MINUTES=0.5 STEPS=3 REF=../shared/bench/ref_nn_transformer.py \
#   REF_SECONDS=10 REF_TEST=20 bash scripts/gpu_check.sh
set -uo pipefail
FINAL=${OUT:-/tmp/mtx-gpu}  # gets all.tgz (every step's file, refreshed after each step) and summary.json
OUT=/tmp/mtx-gpu-work        # (the device returns at most 8 files)
mkdir -p "$FINAL"
save() { tar czf "$FINAL/all.tgz" -C "$OUT" . 2>/dev/null; }
MINUTES=${MINUTES:-2}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-50}
mkdir -p "$OUT"
WHEELS=${WHEELS:-.whl}  # WHEELS=none: use the installed packages (a dry run here)
if [ -d "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
  # datasets needs a recent pyarrow: the carried one (.gpu/extra, by hand) only where the image's does not import
  if ! python3 -c "import datasets" 2>/dev/null && ls .gpu/extra/*.whl >/dev/null 2>&1; then
    echo "datasets does not import with the image's packages: installing .gpu/extra"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/extra/*.whl
  fi
else
  export PYTHONPATH=$PWD
fi
export HF_HOME=/tmp/hf PYTHONUNBUFFERED=1
[ -d .gpu/multi30k ] && export MTX_DATA=$PWD/.gpu/multi30k
mtx() { python3 -m mtx "$@"; }
t0=$(date +%s)
if [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
else
  lscpu | grep -m1 "Model name" | tee "$OUT/gpu.txt"
fi
python3 -c "import torch, datasets, sacrebleu; print('torch', torch.__version__, 'datasets', datasets.__version__)"
if [ -z "${ONLY_SWEEP:-}" ]; then  # ONLY_SWEEP=1: just the SWEEP runs (a second device call)
# PYTEST: the test files to run there (the CPU ones pass in CI; the CUDA ones run nowhere else)
python3 -m pytest -q -rA -p no:cacheprovider ${PYTEST:-tests/test_cuda.py} > "$OUT/pytest.log" 2>&1
grep -E "^(FAILED|ERROR)|CUDA resume|passed|failed|skipped" "$OUT/pytest.log" | tee "$OUT/pytest.txt"; save
small=(--set model.enc_layers=3 --set model.dec_layers=3)
{
  mtx bench train --device "$DEVICE" "${small[@]}" --batch-tokens 4096 --steps $((2 * STEPS))
  [ -z "${NO16K:-}" ] && mtx bench train --device "$DEVICE" "${small[@]}" --batch-tokens 16384 --steps "$STEPS"
  mtx bench train --device "$DEVICE" --steps "$STEPS"
  [ -n "${COMPILE:-}" ] && mtx bench train --device "$DEVICE" "${small[@]}" --batch-tokens 4096 --steps $((2 * STEPS)) --warmup 30 --compile
} | tee "$OUT/bench_train.jsonl"; save
if [ -n "${REF:-}" ]; then
  python3 "$REF" --src de --tgt en --time-budget "${REF_SECONDS:-60}" --device "$DEVICE" --data-dir "${MTX_DATA:-../shared/data/multi30k}" \
    --test-limit "${REF_TEST:-200}" > "$OUT/ref.log" 2>&1
  tail -1 "$OUT/ref.log" | tee "$OUT/ref.json"; save
fi
mtx train --device "$DEVICE" --time-budget "$MINUTES" --out /tmp/gpu-model --overwrite > "$OUT/train.json" 2> "$OUT/train.log"
tail -4 "$OUT/train.log"; cat "$OUT/train.json"
cp /tmp/gpu-model/train_log.jsonl "$OUT/" 2>/dev/null; save
mtx evaluate --model /tmp/gpu-model --device "$DEVICE" --beam 5 --output "$OUT/test.hyp.en" | tee "$OUT/evaluate.txt"
mtx evaluate --model /tmp/gpu-model --device "$DEVICE" --beam 5 --split val --output /tmp/val.hyp | tee "$OUT/evaluate_val.txt"
IFS='|' read -r -a dvariants <<< "${DECODE_VARIANTS:-|--precision bf16|--precision bf16 --batch-tokens 24000}"
for v in "${dvariants[@]}"; do  # fp32 (the figure of 9b1cde1), bf16 autocast, bf16 with larger batches
  mtx bench decode --model /tmp/gpu-model --device "$DEVICE" --beam 5 --settings greedy,beam $v \
    | python3 -c "import json,sys; [print(json.dumps({**json.loads(l), 'args': sys.argv[1]})) for l in sys.stdin if l.startswith('{')]" "$v"
done | tee "$OUT/bench_decode.jsonl"; save
fi
IFS='|' read -r -a variants <<< "${SWEEP:-}"
train_variant() {  # $1: index, $2: space-separated overrides; writes /tmp/sweep-$1{,.json,.log}
  local sets=() dir=/tmp/sweep-$1
  for kv in $2; do sets+=(--set "$kv"); done
  if [ -n "${SWEEP_STEPS:-}" ]; then  # a fixed number of steps: the same training whatever the GPU's contention
    sets+=(--set "train.max_steps=$SWEEP_STEPS" --set train.time_budget_min=0)
  else
    sets+=(--time-budget "$MINUTES")
  fi
  rm -rf "$dir"
  # SIGTERM at SWEEP_TIMEOUT: mtx saves, validates and keeps its best checkpoint, so the variant is still scored
  timeout -s TERM "${SWEEP_TIMEOUT:-1200}" python3 -m mtx train --device "$DEVICE" --out "$dir" --overwrite "${sets[@]}" \
    > "$dir.json" 2> "$dir.log"
}
for i in "${!variants[@]}"; do  # SWEEP_PARALLEL=1: all variants at once (small batches leave the GPU mostly idle)
  if [ -n "${SWEEP_PARALLEL:-}" ]; then train_variant "$i" "${variants[$i]}" & else train_variant "$i" "${variants[$i]}"; fi
done
wait
for i in "${!variants[@]}"; do
  dir=/tmp/sweep-$i
  val=$(mtx evaluate --model "$dir" --device "$DEVICE" --split val --output "$dir.val" | grep -m1 -o 'BLEU = [0-9.]*')
  test=$(mtx evaluate --model "$dir" --device "$DEVICE" --output "$dir.test" | grep -m1 -o 'BLEU = [0-9.]*')
  python3 - "$dir" "${variants[$i]}" "${SWEEP_PARALLEL:+${#variants[@]}}" "$val" "$test" <<'PY' | tee -a "$OUT/sweep.jsonl"
import json, pathlib, sys
d, sets, parallel, val, test = sys.argv[1:]
try:
    r = json.loads(pathlib.Path(d + ".json").read_text())
except (OSError, ValueError):  # the training failed: its log's last line says why
    r = {"error": (pathlib.Path(d + ".log").read_text().strip().splitlines() or ["no log"])[-1]}
for k in ("out", "history"):
    r.pop(k, None)
print(json.dumps({"sets": sets, "parallel": int(parallel or 1), "val": val, "test": test, **r}))
PY
  cp "$dir/train_log.jsonl" "$OUT/sweep-$i.train_log.jsonl" 2>/dev/null; save
done
python3 - "$OUT" "$(( $(date +%s) - t0 ))" <<'PY' | tee "$OUT/summary.json"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
def lines(name):
    p = out / name
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.startswith("{")]
ref = (lines("ref.json") or [{}])[0]
bench = lines("bench_train.jsonl")
s = {"gpu": (out / "gpu.txt").read_text().strip() if (out / "gpu.txt").exists() else None,
     "pytest": (out / "pytest.txt").read_text().strip().splitlines() if (out / "pytest.txt").exists() else None,
     "bench_train": [{k: b.get(k) for k in ("params_m", "batch_tokens", "compile", "tokens_per_s", "step_ms_p50",
                                            "padding_fraction", "peak_mem_mb", "mfu")} for b in bench],
     "ref": {k: ref.get(k) for k in ("train_tokens_per_s", "train_tokens_per_s_steady", "bleu_beam5")},
     "train": (lines("train.json") or [{}])[0],
     "evaluate": (out / "evaluate.txt").read_text().strip() if (out / "evaluate.txt").exists() else None,
     "evaluate_val": (out / "evaluate_val.txt").read_text().strip().splitlines()[:1] if (out / "evaluate_val.txt").exists() else None,
     "decode": [{k: d.get(k) for k in ("args", "setting", "sents_per_s", "bleu")} for d in lines("bench_decode.jsonl")],
     "sweep": lines("sweep.jsonl"),
     "wall_s": int(sys.argv[2])}
steady = ref.get("train_tokens_per_s_steady")
if steady and bench:
    s["speedup_vs_ref"] = [round(b["tokens_per_s"] / steady, 2) for b in bench]
print(json.dumps(s, indent=1))
PY
cp "$OUT/summary.json" "$FINAL/"; save
