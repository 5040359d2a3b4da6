"""SentencePiece tokenizer with fixed special ids (pad 0, unk 1, bos 2, eos 3), kept as bytes in the model dir."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from mtx.errors import MtxError

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Tokenizer:
    def __init__(self, model_proto: bytes):
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        if (self.sp.pad_id(), self.sp.unk_id(), self.sp.bos_id(), self.sp.eos_id()) != (PAD, UNK, BOS, EOS):
            raise MtxError("tokenizer: special ids differ from pad=0 unk=1 bos=2 eos=3")

    @classmethod
    def train(
        cls,
        sentences: Iterable[str],
        vocab_size: int,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
        seed_sentences: int = 2_000_000,
        symbols: tuple[str, ...] = (),
    ) -> Tokenizer:
        """Train a joint vocabulary on `sentences` (the source and target training lines); `symbols` (such as
        target-language tags) become pieces of their own, never split."""
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences),
                model_writer=buf,
                vocab_size=vocab_size,
                model_type=model_type,
                character_coverage=character_coverage,
                pad_id=PAD,
                unk_id=UNK,
                bos_id=BOS,
                eos_id=EOS,
                input_sentence_size=seed_sentences,
                shuffle_input_sentence=True,
                hard_vocab_limit=False,
                num_threads=2,
                minloglevel=2,
                **({"user_defined_symbols": list(symbols)} if symbols else {}),
            )
        except RuntimeError as e:
            reason = str(e).split("]")[-1].strip()
            raise MtxError(f"tokenizer training failed (model.vocab_size={vocab_size}): {reason}") from None
        return cls(buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        try:
            return cls(path.read_bytes())
        except OSError as e:
            raise MtxError(f"{path}: cannot read tokenizer ({e.strerror})") from None
        except RuntimeError:
            raise MtxError(f"{path}: not a valid sentencepiece model") from None

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def has_piece(self, piece: str) -> bool:
        return self.sp.piece_to_id(piece) != UNK or piece == self.sp.id_to_piece(UNK)

    def piece_id(self, piece: str) -> int:
        """The id of a whole piece (a tag); an error when the vocabulary does not have it."""
        i = self.sp.piece_to_id(piece)
        if i == UNK and piece != self.sp.id_to_piece(UNK):
            raise MtxError(f"tokenizer: no piece {piece!r} (the model was not trained with it)")
        return i

    def encode(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts, out_type=int)

    def encode_groups(self, groups: list[list[str]]) -> list[list[list[int]]]:
        """Each group's texts encoded (one call for them all): a sentence's constraints, say."""
        flat = iter(self.encode([t for g in groups for t in g]))
        return [[next(flat) for _ in g] for g in groups]

    def joins(self) -> list[bool]:
        """For each id, whether its piece goes on with the word before it: it starts with a letter or digit, not
        with sentencepiece's word-start mark "▁" (the special ids: False)."""
        sp = self.sp
        return [not sp.is_control(i) and not sp.is_unknown(i) and sp.id_to_piece(i)[:1].isalnum()
                for i in range(len(self))]  # fmt: skip

    def decode(self, ids: list[list[int]]) -> list[str]:
        return self.sp.decode(ids)
