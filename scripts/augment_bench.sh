#!/bin/bash
# Equal-steps comparison of the preset and the augmented preset (issue 34), then BLEU on val, and on test as is,
# in capitals and without final punctuation (docs/recipes.md). From the project's root: bash scripts/augment_bench.sh
# (S=400 steps, validation every E=S steps; a model already under /tmp is kept; variants under /tmp).
export HF_HOME=${HF_HOME:-/tmp/hf}
D=../shared/data/multi30k
mkdir -p /tmp/variants
.venv/bin/python - <<'PY'
from mtx.data.augment import no_final_punctuation, upper
D = "../shared/data/multi30k"
for lang in ("de", "en"):
    lines = open(f"{D}/test_2016_flickr.{lang}", encoding="utf-8").read().splitlines()
    open(f"/tmp/variants/caps.{lang}", "w").write("\n".join(map(upper, lines)) + "\n")
    open(f"/tmp/variants/nopunct.{lang}", "w").write("\n".join(map(no_final_punctuation, lines)) + "\n")
PY
S=${S:-400}
E=${E:-$S}
AUG=${AUG:-"--set data.augment_upper=0.1 --set data.augment_title=0.05 --set data.augment_nopunct=0.2"}
date
[ -f /tmp/base$S/model.safetensors ] ||
  .venv/bin/mtx train --out /tmp/base$S --time-budget 0 --set train.max_steps=$S --set train.eval_every=$E > /tmp/base$S.log 2>&1
date
# shellcheck disable=SC2086
[ -f /tmp/aug$S/model.safetensors ] ||
  .venv/bin/mtx train --out /tmp/aug$S --time-budget 0 --set train.max_steps=$S --set train.eval_every=$E $AUG > /tmp/aug$S.log 2>&1
date
for m in base$S aug$S; do
  tail -1 /tmp/$m.log
  echo "== $m val"; .venv/bin/mtx evaluate --model /tmp/$m --split val 2>/dev/null | grep -E "^BLEU =|sent/s"
  echo "== $m test"; .venv/bin/mtx evaluate --model /tmp/$m 2>/dev/null | grep -E "^BLEU =|chrF2 =|sent/s"
  for v in caps nopunct; do
    echo "== $m $v"; .venv/bin/mtx evaluate --model /tmp/$m --src-file /tmp/variants/$v.de --ref-file /tmp/variants/$v.en --output /tmp/$m.$v.hyp 2>/dev/null | grep -E "^BLEU =|chrF2 =|sent/s"
  done
done
date
