import numpy as np
import tensorflow as tf

from charlm.data import (
    LENGTH_WINDOW,
    PAD_ROW,
    Corpus,
    assemble_batch,
    batch_dataset,
    batch_rows,
    corpus_on_device,
    pad_batch,
)
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
    assert steps == len(texts[3]) + 1  # padded to the longest headline only
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
    assert inputs.shape[1] == 11  # 10 + 1
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


def test_batch_rows_draws_the_batches_of_the_shuffle_then_window_sort_rule():
    # The rule written out plainly: a permutation of every row, each window of
    # LENGTH_WINDOW batches stably sorted by length, cut into batches taken in a permuted
    # order. An epoch's batches depend only on the seed, so a run resumed from a checkpoint
    # written by an earlier release gets the batches that release would have drawn.
    corpus = _corpus(np.random.default_rng(6).integers(0, 90, 5000))
    lengths = corpus.lengths
    for batch_size in (1, 7, 32, 5000):
        rng = np.random.default_rng(11)
        shuffled = rng.permutation(len(corpus))
        window = np.arange(len(corpus)) // (batch_size * LENGTH_WINDOW)
        order = shuffled[np.lexsort((lengths[shuffled], window))]
        bounds = np.arange(0, len(corpus), batch_size)[rng.permutation(-(-5000 // batch_size))]
        expected = [order[b:b + batch_size] for b in bounds]
        plan = batch_rows(corpus, batch_size, np.random.default_rng(11))
        assert plan.rows.dtype == np.int32
        assert [b.tolist() for b in plan] == [b.tolist() for b in expected]


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


def test_batch_dataset_streams_the_plan_from_skip():
    corpus = _corpus([5, 9, 17, 3, 0, 12, 7])
    plan = batch_rows(corpus, 2, np.random.default_rng(0))
    got = [r.numpy() for r in batch_dataset(plan)]
    assert len(got) == len(plan) == 4
    for rows, expected in zip(got, plan, strict=True):
        np.testing.assert_array_equal(rows, expected)
    later = [r.numpy() for r in batch_dataset(plan, skip=2)]
    assert [r.tolist() for r in later] == [r.tolist() for r in got[2:]]


def test_batch_dataset_runs_no_autotuning_thread():
    # An iterator with tf.data's autotuning thread blocked in its destructor for seconds at
    # every epoch's end; the row ids need no background thread at all.
    plan = batch_rows(_corpus([5, 9, 17, 3]), 2, None)
    for replicas in (1, 2):
        assert batch_dataset(plan, replicas=replicas).options().autotune.enabled is False


def test_batch_dataset_fills_batches_for_replicas():
    corpus = _corpus([5, 9, 17, 3, 0, 12, 7])
    plan = batch_rows(corpus, 3, None)  # batches of 3, 3 and 1 rows
    got = [r.numpy().tolist() for r in batch_dataset(plan, replicas=2)]
    assert [len(r) for r in got] == [4, 4, 2]
    assert [r[-1] for r in got] == [PAD_ROW] * 3
    assert sorted(i for r in got for i in r if i != PAD_ROW) == list(range(7))


def test_pad_rows_weigh_nothing():
    corpus = Corpus.from_texts(["abc", "de"])
    _, _, weights = pad_batch(corpus, np.array([1, PAD_ROW, 0, PAD_ROW]), 256)
    assert weights.sum(axis=1).tolist() == [3, 0, 4, 0]


def test_assemble_batch_in_a_compiled_step_matches_eager():
    corpus = _corpus(np.random.default_rng(6).integers(0, 70, 200))
    tensors = corpus_on_device(corpus)
    assemble = tf.function(lambda rows: assemble_batch(tensors, rows, 40),
                           reduce_retracing=True)
    for rows in batch_rows(corpus, 16, np.random.default_rng(1)):
        compiled = [x.numpy() for x in assemble(tf.constant(rows))]
        eager = pad_batch(corpus, rows, 40)
        for a, b in zip(compiled, eager, strict=True):
            np.testing.assert_array_equal(a, b)


def test_corpus_tensors_share_the_numpy_buffer():
    corpus = Corpus.from_texts(["police probe", "wool prices"])
    flat = corpus.tensors.flat
    assert flat.dtype == tf.int8 and flat.shape == (len("police probewool prices"),)
    np.testing.assert_array_equal(flat.numpy(), corpus.flat)
    # zero-copy: the tensor reads the numpy array's memory
    assert corpus.flat.ctypes.data % 64 == 0
    original = int(corpus.flat[0])
    corpus.flat[0] = original + 1
    try:
        assert int(flat[0]) == original + 1
    finally:
        corpus.flat[0] = original


def test_take_is_a_vectorised_copy():
    texts = ["abc", "", "council backs plan", "x"]
    corpus = Corpus.from_texts(texts)
    sub = corpus.take(np.array([2, 1, 3, 2]))
    assert sub.lengths.tolist() == [18, 0, 1, 18]
    assert sub.offsets.tolist() == [0, 18, 18, 19, 37]
    expected = Corpus.from_texts([texts[2], texts[1], texts[3], texts[2]])
    np.testing.assert_array_equal(sub.flat, expected.flat)
    assert len(corpus.take(np.array([], dtype=np.int64))) == 0
