"""Run by torchrun from test_ddp.py: `mtx.train.train` under a time budget, by a clock that a step advances by 0.1 s
on rank 0 and by 0.15 s on rank 1 (a slower replica, whose own clock would put it elsewhere in the schedule); each
rank writes its final parameters, its summary, how often it trained a tokenizer, a digest of its random state and
whether it left the process group."""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

import mtx.train.loop as train_mod
from mtx.checkpoint import state_tensors
from mtx.config import build_config
from mtx.data.tokenizer import Tokenizer

corpus, out, *settings = sys.argv[1:]
rank = int(os.environ["RANK"])
seen = {"model": None, "tokenizers": 0}
now = [1000.0]  # this rank's clock
real_step, real_train_tok = train_mod.train_step, Tokenizer.train.__func__


def train_step(model, *args, **kwargs):
    seen["model"] = model.module  # under DDP
    now[0] += 0.1 if rank == 0 else 0.15
    return real_step(model, *args, **kwargs)


def train_tokenizer(cls, *args, **kwargs):
    seen["tokenizers"] += 1
    return real_train_tok(cls, *args, **kwargs)


train_mod.train_step = train_step
Tokenizer.train = classmethod(train_tokenizer)
summary = train_mod.train(build_config(None, settings), Path(corpus), Path(out), clock=lambda: now[0])
summary.pop("history")
params = state_tensors(seen["model"])
save_file(params, f"{out}/rank{rank}.safetensors")
rng = hashlib.sha1(torch.get_rng_state().numpy().tobytes()).hexdigest()
left = not torch.distributed.is_initialized()  # training left the process group behind it
Path(f"{out}/rank{rank}.json").write_text(
    json.dumps({**summary, "tokenizers": seen["tokenizers"], "rng": rng, "left_group": left})
)
