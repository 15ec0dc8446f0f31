import numpy as np
import pytest

from charlm.vocab import (
    ALPHABET,
    EOS,
    INPUT_SIZE,
    START,
    VOCAB_SIZE,
    EncodingError,
    decode,
    encode,
    encode_many,
)


def test_alphabet_is_the_article_vocabulary():
    assert ALPHABET == "".join(chr(i) for i in range(10, 128))
    assert VOCAB_SIZE == 118
    assert EOS == 0 and ALPHABET[EOS] == "\n"
    assert START == 118 and INPUT_SIZE == 119


def test_round_trip_every_symbol():
    text = ALPHABET[1:] + " police probe crash at gold coast"
    ids = encode(text)
    assert ids.dtype == np.int32
    assert ids.min() > EOS and ids.max() < VOCAB_SIZE
    assert decode(ids) == text
    assert list(encode("a~")) == [ord("a") - 10, ord("~") - 10]


def test_decode_stops_at_end_marker():
    ids = list(encode("abc")) + [EOS] + list(encode("zzz"))
    assert decode(ids) == "abc"
    assert decode([EOS]) == ""
    assert len(encode("")) == 0


@pytest.mark.parametrize("bad", ["\u00e9", "\x01", "\n", "\t", "\u2019"])
def test_char_outside_alphabet_is_named(bad):
    text = f"man {bad} charged"
    with pytest.raises(EncodingError) as info:
        encode(text)
    assert repr(bad) in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(EncodingError) as info:
        encode_many(["fine headline", text])
    assert repr(bad) in str(info.value)


def test_encode_many_offsets():
    texts = ["abc", "", "council backs plan", "x"]
    flat, offsets = encode_many(texts)
    assert offsets.tolist() == [0, 3, 3, 21, 22]
    assert flat.dtype == np.int8 and flat.size == 22
    for i, t in enumerate(texts):
        assert decode(flat[offsets[i]:offsets[i + 1]]) == t
        np.testing.assert_array_equal(flat[offsets[i]:offsets[i + 1]], encode(t))
    flat, offsets = encode_many([])
    assert flat.size == 0 and offsets.tolist() == [0]
