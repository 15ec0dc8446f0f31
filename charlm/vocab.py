"""The article's character vocabulary and the encoding of headlines to ids.

Symbols are ASCII 10..127 (118 of them); id 0 is newline, the end-of-headline
marker. One extra input-only id, START, begins every headline (the article feeds
an all-zeros vector there); the model never predicts it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

FIRST_CODE = 10
ALPHABET: str = "".join(chr(c) for c in range(FIRST_CODE, 128))
VOCAB_SIZE = len(ALPHABET)  # 118 output classes
EOS = 0  # id of "\n"
START = VOCAB_SIZE  # input-only id, 118
INPUT_SIZE = VOCAB_SIZE + 1  # embedding rows: the alphabet plus START


class EncodingError(ValueError):
    """A text holds a character outside the alphabet."""


def encode(text: str) -> np.ndarray:
    """Ids of `text` (no START, no EOS). Raises EncodingError naming the bad character."""
    for pos, ch in enumerate(text):
        if not FIRST_CODE < ord(ch) < 128:  # newline is the end marker, not headline text
            raise EncodingError(
                f"character {ch!r} (code {ord(ch)}) at position {pos} of {text!r} "
                "is outside the headline alphabet (ASCII 11..127; newline ends a headline)"
            )
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int32) - FIRST_CODE


def decode(ids: Iterable[int]) -> str:
    """Text of ids, stopping at the first EOS."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        assert 0 < i < VOCAB_SIZE, f"id {i} is not an output symbol"
        out.append(chr(i + FIRST_CODE))
    return "".join(out)


def encode_many(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenated ids of all texts plus offsets: texts[i] is flat[offsets[i]:offsets[i+1]].

    A flat int8 buffer keeps a million headlines in tens of MB, not a list of arrays.
    """
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    joined = "".join(texts)
    flat = np.frombuffer(joined.encode("ascii", errors="replace"), dtype=np.uint8)
    if not joined.isascii() or (flat.size and flat.min() <= FIRST_CODE):
        for t in texts:
            encode(t)  # raises, naming the offending text
    return (flat - FIRST_CODE).view(np.int8), offsets  # ids < 118 fit int8: no copy
