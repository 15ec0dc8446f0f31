import json

import numpy as np
import pytest
import tensorflow as tf

from charlm.config import SampleConfig
from charlm.model import (
    build_model,
    count_parameters,
    initial_states,
    load_model,
    read_config,
    save_model,
    start_tokens,
    step,
)
from charlm.sample import generate
from charlm.vocab import START, VOCAB_SIZE
from storage.layout import ModelFiles


def _tokens(batch, steps, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, VOCAB_SIZE, (batch, steps)).astype(np.int32)
    tokens[:, 0] = START
    return tokens


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("embedding", [0, 6])
def test_output_shape(tiny_model, cell, depth, embedding):
    model, config = tiny_model(cell=cell, depth=depth, embedding=embedding, hidden=8)
    logits = model(_tokens(3, 5), training=False)
    assert tuple(logits.shape) == (3, 5, VOCAB_SIZE)
    assert logits.dtype == tf.float32
    assert np.isfinite(logits.numpy()).all()
    assert len([w for w in model.layers if w.name.startswith(cell + "_")]) == depth
    assert count_parameters(model) > 0


def test_one_hot_input_is_the_article_encoding(tiny_model):
    model, _ = tiny_model(embedding=0)
    table = model.get_layer("embedding").embeddings.numpy()
    assert table.shape == (VOCAB_SIZE + 1, VOCAB_SIZE)
    np.testing.assert_array_equal(table[:VOCAB_SIZE], np.eye(VOCAB_SIZE))
    np.testing.assert_array_equal(table[START], 0.0)  # START is the all-zeros vector
    assert model.get_layer("embedding").trainable_weights == []


@pytest.mark.parametrize("cell,variant", [("gru", "keras"), ("gru", "article"),
                                          ("lstm", "keras"), ("rnn", "keras")])
def test_step_matches_full_sequence(tiny_model, cell, variant):
    model, _ = tiny_model(cell=cell, depth=3, embedding=8, dropout=0.2, gru_variant=variant)
    tokens = _tokens(4, 9, seed=1)
    full = model(tokens, training=False).numpy()
    states = initial_states(model, 4)
    assert len(states) == 3 * (2 if cell == "lstm" else 1)
    for t in range(tokens.shape[1]):
        logits, states = step(model, tf.constant(tokens[:, t]), states)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=1e-5, rtol=0)
    # the states really carry information: a fresh state at the last step gives other logits
    fresh, _ = step(model, tf.constant(tokens[:, -1]), initial_states(model, 4))
    assert np.abs(fresh.numpy() - full[:, -1]).max() > 1e-3


def test_save_load_round_trip(tmp_path, tiny_model):
    model, config = tiny_model(cell="lstm", depth=2, embedding=8, dropout=0.1, seed=21)
    # move the weights away from the initialiser so loading really has to read them
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    directory = tmp_path / "m"
    directory.mkdir()
    files = ModelFiles.at(directory)
    save_model(model, config, files, extra={"note": "x"})
    loaded, loaded_config = load_model(files, precision="float32")
    assert loaded_config == config
    assert read_config(files)[1]["note"] == "x"
    tokens = _tokens(3, 12, seed=2)
    np.testing.assert_array_equal(loaded(tokens, training=False).numpy(),
                                  model(tokens, training=False).numpy())
    sample = SampleConfig(max_new_chars=20, seed=5)
    assert generate(loaded, 4, sample).texts == generate(model, 4, sample).texts
    # a freshly built model with the same config differs: the weights came from disk
    fresh = build_model(config, precision="float32")
    assert not np.allclose(fresh(tokens).numpy(), model(tokens).numpy())


def test_load_model_rejects_bad_directories(tmp_path, tiny_model):
    model, config = tiny_model()
    good = tmp_path / "good"
    good.mkdir()
    good_files = ModelFiles.at(good)
    save_model(model, config, good_files)
    assert good_files.weights.exists()

    empty = tmp_path / "empty"
    empty.mkdir()
    ModelFiles.at(empty).weights.write_bytes(good_files.weights.read_bytes())
    with pytest.raises(ValueError, match=good_files.config.name):
        load_model(ModelFiles.at(empty))

    payload = json.loads(good_files.config.read_text())
    for name, text in [("format", json.dumps({**payload, "format": 99})),
                       ("noformat", json.dumps({k: v for k, v in payload.items()
                                                if k != "format"})),
                       ("json", "{not json"),
                       ("field", json.dumps({**payload,
                                             "model": {**payload["model"], "hiden": 3}}))]:
        bad = tmp_path / name
        bad.mkdir()
        for f in good.iterdir():
            (bad / f.name).write_bytes(f.read_bytes())
        ModelFiles.at(bad).config.write_text(text)
        with pytest.raises(ValueError):
            load_model(ModelFiles.at(bad))


def test_start_tokens():
    assert start_tokens(3).tolist() == [START] * 3
