"""The stacked recurrent character model: build, save and load.

`build_model(config)` returns a functional Keras model mapping input ids
(batch, time) to next-character logits (batch, time, 118). Every recurrent layer
is built with `return_state=True` so that sampling can run the very same layers
one step at a time (see `step`), and with the defaults that keep them
cuDNN-eligible on a GPU (tanh/sigmoid, no recurrent dropout, no unroll).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from charlm import recurrent
from charlm.config import PRECISIONS, ModelConfig, from_dict, to_dict
from charlm.devices import cpu_has_bf16, gpu_available
from charlm.vocab import ALPHABET, INPUT_SIZE, START, VOCAB_SIZE

FORMAT = 1


class ModelPaths(Protocol):
    """Where a saved model's three files are; the caller decides (storage.layout.ModelFiles)."""

    @property
    def config(self) -> Path: ...  # JSON: format, ModelConfig, and the caller's extras

    @property
    def vocabulary(self) -> Path: ...  # JSON: the alphabet the ids refer to

    @property
    def weights(self) -> Path: ...  # Keras weights (.weights.h5)


def resolve_precision(precision: str) -> str:
    """Keras dtype policy for training at `precision` (one of PRECISIONS).

    'auto' = mixed_float16 on a GPU (cuDNN, loss scaling), mixed_bfloat16 on CPUs with
    bfloat16 instructions (about twice float32's speed there), float32 elsewhere.
    Variables stay float32 in every mixed policy.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if gpu_available():
            return "mixed_float16"
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    return precision


def cudnn_problems(layer: keras.layers.Layer) -> list[str]:
    """Why `layer` cannot run on cuDNN: [] when it can.

    The conditions of Keras' cuDNN kernels (keras.src.backend.tensorflow.rnn.cudnn_ok):
    tanh activation, sigmoid recurrent activation, a bias, no unrolling, no recurrent
    dropout; for a GRU also reset_after=True; and no mask (we never pass one).
    """
    if isinstance(layer, keras.layers.SimpleRNN):
        return ["SimpleRNN has no cuDNN kernel"]
    problems = []
    if layer.activation not in (keras.activations.tanh, tf.tanh):
        problems.append(f"activation is {layer.activation.__name__}, not tanh")
    if layer.recurrent_activation not in (keras.activations.sigmoid, tf.sigmoid):
        problems.append(
            f"recurrent_activation is {layer.recurrent_activation.__name__}, not sigmoid")
    if not layer.use_bias:
        problems.append("use_bias is False")
    if layer.unroll:
        problems.append("unroll is True")
    if layer.recurrent_dropout:
        problems.append(f"recurrent_dropout is {layer.recurrent_dropout}")
    if isinstance(layer, keras.layers.GRU) and not layer.reset_after:
        problems.append("reset_after is False (the article's GRU variant)")
    return problems


# Named "Dense": Keras names a layer's entries in a .weights.h5 file after its class, so
# models saved with keras.layers.Dense logits load into it unchanged.
@keras.saving.register_keras_serializable(package="charlm")
class Dense(keras.layers.Dense):
    """keras.layers.Dense whose outputs are float32 whatever it computes in: under a mixed
    policy the logits' matmuls run in the compute dtype, as torch.autocast runs nn.Linear
    (at 128 units in bfloat16 a float32 logits layer was ~5% of a training step), while the
    softmax statistics after it stay float32."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.cast(super().call(inputs), "float32")

    def compute_output_spec(self, inputs: Any) -> keras.KerasTensor:
        shape = self.compute_output_shape(inputs.shape)
        return keras.KerasTensor(shape, dtype="float32")


def _recurrent_layer(config: ModelConfig, index: int, dtype: str) -> keras.layers.Layer:
    common: dict[str, Any] = dict(
        units=config.hidden,
        return_sequences=True,
        return_state=True,
        name=f"{config.cell}_{index}",
        dtype=dtype,
        kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed + 1 + index),
        recurrent_initializer=keras.initializers.Orthogonal(seed=config.seed + 101 + index),
    )
    if config.cell == "rnn":
        return keras.layers.SimpleRNN(**common)
    if config.weight_drop:  # only then: the layers stay plain keras.layers.GRU/LSTM's otherwise
        common.update(weight_drop=config.weight_drop, weight_drop_seed=config.seed + 401 + index)
    if config.cell == "lstm":
        layer = recurrent.LSTM(**common)  # Keras' LSTM, fused gates on a CPU
    else:
        # Keras' GRU with a faster loop where cuDNN is off (CPUs): charlm.recurrent.
        layer = recurrent.GRU(reset_after=config.gru_variant == "keras", **common)
    if gpu_available():
        problems = cudnn_problems(layer)
        if problems:
            # Said once per layer: this model trains on the GPU, but without cuDNN.
            logging.getLogger("charlm").warning(
                "%s runs without cuDNN on the GPU (slower): %s", layer.name, "; ".join(problems))
        else:
            # True, not "auto": a silent fallback to the generic loop becomes an error.
            layer.use_cudnn = True
    else:
        layer.use_cudnn = False  # no GPU: skip Keras' try-cuDNN-then-fall-back at trace time
    return layer


def build_model(config: ModelConfig, precision: str = "float32") -> keras.Model:
    """Embedding -> `depth` stacked recurrent layers -> logits over the 118 symbols."""
    dtype = resolve_precision(precision)
    tokens = keras.Input(shape=(None,), dtype="int64", name="tokens")  # (B, T)
    if config.embedding == 0:
        # The article's one-hot input: a frozen identity table, START maps to zeros.
        table = np.concatenate([np.eye(VOCAB_SIZE), np.zeros((1, VOCAB_SIZE))]).astype("float32")
        embed = keras.layers.Embedding(
            INPUT_SIZE, VOCAB_SIZE, trainable=False, name="embedding", dtype=dtype,
            embeddings_initializer=keras.initializers.Constant(table),
        )
    else:
        embed = keras.layers.Embedding(
            INPUT_SIZE, config.embedding, name="embedding", dtype=dtype,
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=config.seed),
        )
    x = embed(tokens)  # (B, T, E)
    for i in range(config.depth):
        x = _recurrent_layer(config, i, dtype)(x)[0]  # (B, T, H)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, seed=config.seed + 201 + i,
                                     name=f"dropout_{i}")(x)
    logits = Dense(
        VOCAB_SIZE, name="logits", dtype=dtype,  # float32 out: softmax statistics stay float32
        kernel_initializer=keras.initializers.GlorotUniform(seed=config.seed + 301),
    )(x)  # (B, T, V)
    return keras.Model(tokens, logits, name=f"charlm_{config.cell}_{config.hidden}x{config.depth}")


def recurrent_layers(model: keras.Model) -> list[keras.layers.Layer]:
    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
    assert layers, "model has no recurrent layer"
    return layers


def initial_states(model: keras.Model, batch: int | tf.Tensor) -> list[tf.Tensor]:
    """Zero states for every recurrent layer, flattened: [h0, (c0,) h1, ...], each (B, H)."""
    states = []
    for layer in recurrent_layers(model):
        n = 2 if isinstance(layer, keras.layers.LSTM) else 1
        states.extend(tf.zeros((batch, layer.units), dtype=layer.compute_dtype) for _ in range(n))
    return states


def step(model: keras.Model, tokens: tf.Tensor, states: list[tf.Tensor]
         ) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """One time step through the layers' cells: tokens (B,), flat states -> logits (B, V)."""
    x = model.get_layer("embedding")(tokens)  # (B, E)
    new_states: list[tf.Tensor] = []
    i = 0
    for layer in recurrent_layers(model):
        n = 2 if isinstance(layer, keras.layers.LSTM) else 1
        if isinstance(layer, (recurrent.LSTM, recurrent.GRU)):
            x, layer_states = layer.step(x, states[i:i + n])  # fused on a CPU
        else:
            x, layer_states = layer.cell(x, states[i:i + n], training=False)  # (B, H)
        new_states.extend(layer_states if isinstance(layer_states, (list, tuple))
                          else [layer_states])
        i += n
    logits = model.get_layer("logits")(x)  # (B, V)
    return tf.cast(logits, tf.float32), new_states


def start_tokens(batch: int) -> np.ndarray:
    return np.full((batch,), START, dtype=np.int64)


def save_model(model: keras.Model, config: ModelConfig, files: ModelPaths,
               extra: dict[str, Any] | None = None) -> None:
    """Write a self-describing model: config, vocabulary, weights (no code) to `files`."""
    payload = {"format": FORMAT, "model": to_dict(config), **(extra or {})}
    files.config.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    files.vocabulary.write_text(
        json.dumps({"alphabet": ALPHABET, "end": "\n", "start_id": START}) + "\n")
    model.save_weights(files.weights)


def read_config(files: ModelPaths) -> tuple[ModelConfig, dict[str, Any]]:
    """The ModelConfig of a saved model and the rest of its config file."""
    path = files.config
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path.parent} is not a charlm model: no {path.name}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} has model format {payload.get('format')!r}, expected {FORMAT}")
    try:
        vocab = json.loads(files.vocabulary.read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise ValueError(f"{files.vocabulary} is missing or invalid: {e}") from None
    if vocab.get("alphabet") != ALPHABET:
        raise ValueError(f"{files.vocabulary} holds a different alphabet")
    return from_dict(ModelConfig, payload.pop("model")), payload


def load_model(files: ModelPaths, precision: str = "float32") -> tuple[keras.Model, ModelConfig]:
    """Rebuild the architecture from the config file and load weights; executes nothing
    from disk.

    Float32 by default whatever the training precision, so evaluation is exact and
    sampling reproducible across machines.
    """
    config, _ = read_config(files)
    model = build_model(config, precision=precision)
    model.load_weights(files.weights)
    return model, config


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
