import datetime as dt

import numpy as np
import pytest

from charlm.demo_corpus import make_corpus
from charlm.vocab import encode


def test_deterministic_for_a_seed():
    a = make_corpus(200, np.random.default_rng(11))
    b = make_corpus(200, np.random.default_rng(11))
    c = make_corpus(200, np.random.default_rng(12))
    assert a == b
    assert a != c


def test_dates_and_texts_are_valid():
    rows = make_corpus(500, np.random.default_rng(0))
    assert len(rows) == 500
    dates = [dt.datetime.strptime(d, "%Y%m%d").date() for d, _ in rows]
    assert all(len(d) == 8 and d.isdigit() for d, _ in rows)
    assert dates == sorted(dates)
    assert dates[0] == dt.date(2003, 2, 19)
    texts = [t for _, t in rows]
    for t in texts:
        assert t and t.isascii() and t.isprintable(), repr(t)
        assert t == t.strip()
        encode(t)  # inside the model's alphabet
    assert len(set(texts)) > 300  # varied


def test_rejects_empty_corpus():
    with pytest.raises(ValueError):
        make_corpus(0, np.random.default_rng(0))
