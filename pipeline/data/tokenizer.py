"""One joint byte-level BPE vocabulary for source and target (HF ``tokenizers``), with fixed special ids.

Byte-level BPE never needs ``<unk>`` (every byte is in the base alphabet), and its decoder inverts the
pre-tokenizer exactly, so ``decode(encode(text)) == unicodedata.normalize("NFC", text)``: the only change is NFC
normalisation (so "é" typed as e + combining accent and as one code point share tokens). Special tokens written
literally in the text (e.g. "<pad>") are encoded as ordinary text, never as their special ids, so id 0 only ever
means padding.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in this order
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
SPECIAL_IDS = {PAD: PAD_ID, BOS: BOS_ID, EOS: EOS_ID, UNK: UNK_ID}


class TextTokenizer:
    """Thin wrapper over ``tokenizers.Tokenizer``: plain ``encode(str) -> list[int]`` and ``decode``."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        for token, expected in SPECIAL_IDS.items():
            found = tokenizer.token_to_id(token)
            if found != expected:
                raise ValueError(f"tokenizer has {token} at id {found}, expected {expected}")
        tokenizer.encode_special_tokens = True  # literal "<pad>" in text is text, not id 0
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without BOS/EOS (the loader adds them)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Like ``encode`` for many texts at once (multi-threaded in Rust; ``encode_batch_fast`` skips the
        character offsets we never use: the same ids, ~20 % faster measured on the bible verses)."""
        return [e.ids for e in self.tokenizer.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens (padding, BOS, EOS) are dropped."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        self.tokenizer.save(str(path))


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> TextTokenizer:
    """Train a byte-level BPE on ``texts`` (callers pass the train split only, both sides)."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(
            f"vocab_size must be at least {len(SPECIAL_TOKENS) + 256} for byte-level BPE, got {vocab_size}"
        )
    tokenizer = Tokenizer(models.BPE(unk_token=UNK))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return TextTokenizer(tokenizer)


def load_tokenizer(path: str | Path) -> TextTokenizer:
    """Load ``tokenizer.json`` written by ``prepare`` (a data dir is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer not found: {path} (run `pipeline data prepare`)")
    return TextTokenizer(Tokenizer.from_file(str(path)))
