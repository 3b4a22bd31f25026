"""Training a SentencePiece BPE tokenizer with the challenge's settings, reproducibly.

The embedded data set and the test fixtures both need tokenizers that behave like the
challenge's ``fineweb_1024_bpe.model`` (byte fallback, digit splitting, NFKC, no dummy
prefix, ids pad 0 / bos 1 / eos 2 / unk 3), so that byte accounting and models see the same
kinds of pieces as on real data. Reproducibility matters because the embedded shards are
cached and compared across runs: one thread, no sentence sampling, no shuffling, fixed seed.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import sentencepiece as spm

from harness.errors import DataFormatError

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
CHALLENGE_VOCAB_SIZE = 1024
TRAINER_SEED = 20240520


def train_bpe_tokenizer(sentences: Iterable[str], vocab_size: int = CHALLENGE_VOCAB_SIZE) -> bytes:
    """Return the serialized model proto of a BPE tokenizer trained on ``sentences``.

    ``hard_vocab_limit=False`` lets a small corpus produce fewer pieces than asked instead
    of failing; the full embedded corpus reaches the requested size.
    """
    lines = [line for line in sentences if line.strip()]
    if not lines:
        raise DataFormatError("cannot train a tokenizer on an empty corpus")
    spm.set_random_generator_seed(TRAINER_SEED)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=0.999,
        byte_fallback=True,
        split_digits=True,
        normalization_rule_name="nmt_nfkc",
        add_dummy_prefix=False,
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        unk_id=UNK_ID,
        hard_vocab_limit=False,
        num_threads=1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    return model.getvalue()
