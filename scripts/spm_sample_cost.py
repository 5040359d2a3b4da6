"""Time and peak memory of sentencepiece training on N sentences (resampled from Multi30k's train lines), in a
process of its own: `python scripts/spm_sample_cost.py N [DATA_DIR]`. Sizes `data.spm_sample_sentences`."""

import io
import random
import resource
import sys
import time

import sentencepiece as spm

n = int(sys.argv[1])
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/multi30k"
lines = []
for lang in ("de", "en"):
    with open(f"{data}/train.{lang}", encoding="utf-8") as f:
        lines += f.read().splitlines()
rng = random.Random(0)
t = time.time()
spm.SentencePieceTrainer.train(
    sentence_iterator=(lines[rng.randrange(len(lines))] for _ in range(n)),
    model_writer=io.BytesIO(),
    vocab_size=8000,
    model_type="unigram",
    character_coverage=1.0,
    pad_id=0,
    unk_id=1,
    bos_id=2,
    eos_id=3,
    input_sentence_size=2_000_000,
    hard_vocab_limit=False,
    num_threads=2,
    minloglevel=2,
)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{n} sentences: {time.time() - t:.1f} s, peak RSS {peak:.0f} MB")
