#!/usr/bin/env bash
# Runs mtx on bad inputs and prints a Markdown table of what the user sees (exit code, stderr's last line).
# Usage: bash scripts/bad_inputs.sh MODEL_DIR   (a trained model directory)
set -u
MODEL=${1:-checkpoints/multi30k-de-en}
T=$(mktemp -d)
printf 'Ein Hund.\nZwei Männer.\n' > "$T/train.de"; printf 'A dog.\n' > "$T/train.en"
printf 'Ein Hund.\n' > "$T/a.de"; printf 'A dog.\n\n' > "$T/a.en"
printf 'Ein Hund.\nKatze \xe4 rot.\n' > "$T/latin1.de"
printf 'Ein Hund.\n\nKatze.\n' > "$T/empty.de"; printf 'A dog.\nX\nCat.\n' > "$T/empty.en"
: > "$T/nothing.de"; : > "$T/nothing.en"
mkdir -p "$T/t" "$T/e"
printf 'de\tfr\nEin Hund.\tUn chien.\n' > "$T/t/c.tsv"
printf '{"de": "Ein Hund.", "en": "A dog."}\n{"de": "Katze \xe4 rot.", "en": "Red cat."}\n' > "$T/t/bad.jsonl"
printf 'Ein Hund.\n\nKatze.\n' > "$T/e/train.de"; printf 'A dog.\nX\nCat.\n' > "$T/e/train.en"
cp -r "$MODEL" "$T/res"  # a model directory with a resumable state
cp -r "$MODEL" "$T/trunc"; head -c 1000 "$MODEL/model.safetensors" > "$T/trunc/model.safetensors"
mkdir -p "$T/pickle"; cp "$MODEL"/config.json "$MODEL"/tokenizer.model "$T/pickle/"
python3 -c "import pickle,sys; open(sys.argv[1],'wb').write(pickle.dumps({'a':1}))" "$T/pickle/model.safetensors"
cp -r "$MODEL" "$T/badcfg"
python3 -c "import json,sys; p=sys.argv[1]; d=json.load(open(p)); d['config']['model']=5; json.dump(d, open(p,'w'))" "$T/badcfg/config.json"
mkdir -p "$T/notes"; echo "mine" > "$T/notes/mine.txt"
LONG=$(python3 -c "print('Hund ' * 400)")
row() {
  local what=$1; shift
  out=$("$@" 2>"$T/err" >/dev/null </dev/null); rc=$?
  msg=$(tail -n 1 "$T/err" | sed "s#$T#TMP#g; s#|#/#g")
  cmd="${*:2}"
  cmd=${cmd//$MODEL/MODEL}
  cmd=${cmd//$LONG/\"Hund Hund … (400 words)\"}
  echo "| $what | \`mtx $cmd\` | $rc | $msg |" | sed "s#$T#TMP#g"
}
echo "| bad input | command | exit | what the user sees (stderr, last line) |"
echo "|---|---|---|---|"
row "misaligned training files" mtx train --data "$T" --out "$T/m"
row "data directory missing" mtx train --data "$T/none" --out "$T/m"
row "a TSV without the language's column" mtx train --data "$T/t/c.tsv" --out "$T/m"
row "invalid UTF-8 in a JSONL row" mtx train --data "$T/t/bad.jsonl" --out "$T/m"
row "an empty line, data.strict=true" mtx train --data "$T/e" --set data.strict=true --out "$T/m"
row "a malformed hub name" mtx train --data hf:a:b:c --out "$T/m"
row "a hub dataset, offline" mtx train --data hf:nobody/no-such-corpus --out "$T/m"
row "unknown language code" mtx train --data "$T" --src xx --out "$T/m"
row "unknown config key" mtx train --set model.dmodel=3
row "invalid config value" mtx train --set train.lr=fast
row "negative time budget" mtx train --time-budget -1
row "unknown schedule" mtx train --set train.schedule=step
row "pairs longer than the model's positions" mtx train --set data.max_tokens=300
row "d_model not a multiple of n_heads" mtx train --set model.n_heads=3
row "nothing to resume" mtx train --resume "$T/none"
row "resume with a changed model" mtx train --resume "$T/res" --set model.enc_layers=7
row "resume with another source language" mtx train --resume "$T/res" --src fr
row "more GPUs than the machine has" mtx train --gpus 2
row "averaging fraction out of range" mtx train --set train.average=4 --set train.average_frac=2
row "token dropout out of range" mtx train --set train.src_token_dropout=1.5
row "n-best beyond the beam (from --set)" mtx train --set decode.nbest=9
row "negative length penalty (from --set)" mtx train --set decode.alpha=-1
row "a new training into an earlier model's directory" mtx train --out "$T/res"
row "--overwrite of a directory that holds no model" mtx train --out "$T/notes" --overwrite
row "an infinite learning rate" mtx train --set train.lr=inf
row "a split name that is a path (from --set)" mtx train --set data.test_split=../../x
row "fine-tuning with another architecture" mtx train --init "$MODEL" --set model.d_model=128 --out "$T/ft"
row "fine-tuning into the model's own directory" mtx train --init "$MODEL" --out "$MODEL"
row "fine-tuning with a tag the tokenizer lacks" mtx train --init "$MODEL" --data "$T/e,tag=bt" --out "$T/ft"
row "a corpus weight of 0" mtx train --data "$T/e,weight=0" --out "$T/m"
row "the same corpus twice" mtx train --data "$T/e" --data "$T/e" --out "$T/m"
row "missing model directory" mtx translate --model "$T/none" Hallo
row "truncated weights" mtx translate --model "$T/trunc" Hallo
row "a pickle where the weights belong" mtx translate --model "$T/pickle" Hallo
row "missing input file" mtx translate --model "$MODEL" --input "$T/none.de"
row "invalid UTF-8 in input" mtx translate --model "$MODEL" --input "$T/latin1.de"
row "negative beam" mtx translate --model "$MODEL" --beam -1 Hallo
row "negative length penalty" mtx translate --model "$MODEL" --alpha -1 Hallo
row "unknown device" mtx translate --model "$MODEL" --device tpu Hallo
row "very long line (400 pieces; the model takes 255)" mtx translate --model "$MODEL" "$LONG"
row "control characters" mtx translate --model "$MODEL" "$(printf 'Ein\x07 Hund\x1b rennt.')"
row "a malformed sampling rule" mtx translate --model "$MODEL" --sample top5 Hallo
row "fewer prefixes than input lines" mtx translate --model "$MODEL" --input "$T/empty.de" --prefix-file "$T/a.de"
row "misaligned files to score" mtx score --model "$MODEL" --src-file "$T/a.de" --ref-file "$T/a.en"
row "misaligned test files" mtx evaluate --model "$MODEL" --src-file "$T/a.de" --ref-file "$T/a.en"
row "empty line in a test set" mtx evaluate --model "$MODEL" --src-file "$T/empty.de" --ref-file "$T/empty.en"
row "empty test files" mtx evaluate --model "$MODEL" --src-file "$T/nothing.de" --ref-file "$T/nothing.en"
row "--src-file without --ref-file" mtx evaluate --model "$MODEL" --src-file "$T/a.de"
row "test split missing" mtx evaluate --model "$MODEL" --data "$T" --split test
row "a split name that is a path" mtx evaluate --model "$MODEL" --split ../../x
row "a config.json with a section that is not a table" mtx translate --model "$T/badcfg" Hallo
row "export into the model's own directory" mtx export "$T/res" "$T/res" --force
row "export --force over a directory of other files" mtx export "$MODEL" "$T/notes" --force
row "a port out of range" mtx serve --model "$MODEL" --port 70000
row "an endless batch wait" mtx serve --model "$MODEL" --batch-wait-ms inf
rm -rf "$T"
