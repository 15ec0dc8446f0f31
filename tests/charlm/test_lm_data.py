import numpy as np

from charlm.data import PAD_MULTIPLE, Corpus, batch_rows, pad_batch, to_dataset
from charlm.vocab import EOS, START, encode


def _corpus(lengths, seed=0):
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghij klmnop"))
    return Corpus.from_texts(["".join(rng.choice(letters, n)) for n in lengths])


def test_corpus_basics():
    texts = ["abc", "", "council backs plan"]
    corpus = Corpus.from_texts(texts)
    assert len(corpus) == 3
    assert corpus.lengths.tolist() == [3, 0, 18]
    assert corpus.characters == 21 + 3
    sub = corpus.take(np.array([2, 0]))
    assert sub.lengths.tolist() == [18, 3]
    np.testing.assert_array_equal(sub.flat[:18], encode(texts[2]))


def test_pad_batch_layout():
    texts = ["police probe", "a", "", "wool prices rise again"]
    corpus = Corpus.from_texts(texts)
    rows = np.array([3, 0, 1, 2])
    inputs, targets, weights = pad_batch(corpus, rows, max_length=256)
    steps = inputs.shape[1]
    assert inputs.shape == targets.shape == weights.shape == (4, steps)
    assert steps % PAD_MULTIPLE == 0 and steps >= len(texts[3]) + 1
    assert (inputs[:, 0] == START).all()
    for b, i in enumerate(rows):
        ids = encode(texts[i])
        n = len(ids)
        np.testing.assert_array_equal(inputs[b, 1:n + 1], ids)
        np.testing.assert_array_equal(targets[b, :n], ids)
        assert targets[b, n] == EOS  # the end marker is a target
        assert weights[b].sum() == n + 1
        assert (weights[b, :n + 1] == 1).all() and (weights[b, n + 1:] == 0).all()
    assert weights.sum() == corpus.characters


def test_pad_batch_cuts_long_headlines():
    corpus = Corpus.from_texts(["x" * 30, "abc"])
    inputs, targets, weights = pad_batch(corpus, np.array([0, 1]), max_length=10)
    assert inputs.shape[1] == -(-11 // PAD_MULTIPLE) * PAD_MULTIPLE  # 10 + 1, rounded up
    assert weights[0].sum() == 10  # cut: its end marker is not predicted
    assert weights[1].sum() == 4


def _check_cover(batches, n, batch_size):
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert all(1 <= len(b) <= batch_size for b in batches)


def test_batch_rows_covers_every_row_once():
    corpus = _corpus(np.random.default_rng(1).integers(0, 90, 1000))
    for rng in (None, np.random.default_rng(5)):
        _check_cover(batch_rows(corpus, 32, rng), 1000, 32)
    _check_cover(batch_rows(corpus, 7, np.random.default_rng(0)), 1000, 7)
    _check_cover(batch_rows(corpus, 5000, np.random.default_rng(0)), 1000, 5000)


def test_batch_rows_same_seed_same_batches():
    corpus = _corpus(np.random.default_rng(2).integers(0, 90, 3000))
    a = batch_rows(corpus, 16, np.random.default_rng(9))
    b = batch_rows(corpus, 16, np.random.default_rng(9))
    c = batch_rows(corpus, 16, np.random.default_rng(10))
    assert len(a) == len(b)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_bucketing_keeps_padding_low():
    # Headline-like lengths: mean about 42, long right tail, a few very short ones.
    lengths = np.clip(np.random.default_rng(3).gamma(9.0, 4.7, 6000).astype(int), 1, 200)
    corpus = _corpus(lengths)
    for rng in (np.random.default_rng(4), None):
        padded = real = 0
        for rows in batch_rows(corpus, 32, rng):
            _, _, weights = pad_batch(corpus, rows, 256)
            padded += weights.size
            real += weights.sum()
        assert real == corpus.characters
        waste = 1 - real / padded
        assert waste < 0.15, waste
    # Without bucketing the same batches would waste far more (sanity check of the measure).
    order = np.random.default_rng(4).permutation(len(corpus))
    padded = sum(pad_batch(corpus, order[i:i + 32], 256)[2].size
                 for i in range(0, len(corpus), 32))
    assert 1 - corpus.characters / padded > 0.3


def test_to_dataset_yields_pad_batch():
    corpus = _corpus([5, 9, 17, 3, 0])
    rows = batch_rows(corpus, 2, np.random.default_rng(0))
    got = list(to_dataset(corpus, rows, 256))
    assert len(got) == len(rows)
    for (i, t, w), r in zip(got, rows, strict=True):
        ei, et, ew = pad_batch(corpus, r, 256)
        np.testing.assert_array_equal(i.numpy(), ei)
        np.testing.assert_array_equal(t.numpy(), et)
        np.testing.assert_array_equal(w.numpy(), ew)
