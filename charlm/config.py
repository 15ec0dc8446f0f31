"""Every tunable of charlm in one place: frozen dataclasses with flat fields.

The CLI, the Prefect flows and the tests all build these; defaults here are the
documented defaults everywhere else (the CLI and flow parameters read them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

Cell = Literal["gru", "lstm", "rnn"]
CELLS: tuple[str, ...] = get_args(Cell)
# Training precision: auto = mixed_float16 on a GPU, mixed_bfloat16 on CPUs with bfloat16
# instructions, else float32 (charlm.model.resolve_precision).
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network: embedding -> `depth` recurrent layers -> softmax."""

    # The tuned default (see README, "Quality"): on 2 CPU cores a GRU learns far faster per
    # minute than an LSTM of the same width; 384x2 at batch 128 fits ~16 epochs into 30
    # minutes and ends below 256x2 (more epochs, less capacity) in the same budget.
    cell: Cell = "gru"
    hidden: int = 384  # the article's inter_time_step_size (it used 512)
    depth: int = 2
    embedding: int = 64  # 0 means one-hot input (identity embedding), as in the article
    dropout: float = 0.15  # between stacked layers and before the softmax; 0 disables
    # "keras" GRUs use reset_after=True (cuDNN-eligible); "article" applies the
    # relevance gate before the matmul, as the article does (used by import-article).
    gru_variant: Literal["keras", "article"] = "keras"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")
        if self.embedding < 0:
            raise ValueError(f"embedding must be >= 0, got {self.embedding}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.gru_variant not in ("keras", "article"):
            raise ValueError(f"gru_variant must be 'keras' or 'article', got {self.gru_variant!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a model: optimisation, budget, batching."""

    batch_size: int = 128  # at 384x2: 1.15-1.35x the chars/s of 64, lower loss per epoch
    epochs: int = 30
    max_minutes: float = 30.0  # hard wall-clock budget; training stops cleanly when reached
    learning_rate: float = 5e-3  # peak, after warm-up; cosine decay to min_learning_rate
    min_learning_rate: float = 1e-4  # end of the cosine decay over the time budget
    clip_norm: float = 1.0  # global gradient-norm clipping
    weight_decay: float = 0.0  # decoupled (AdamW) decay of every weight but the biases
    patience: int = 3  # epochs without validation improvement before early stopping
    truncate_length: int = 256  # longer headlines are cut for training (ingestion caps them)
    validation_limit: int = 5000  # validation headlines scored each epoch (all if 0)
    checkpoint_minutes: float = 2.0  # mid-epoch checkpoint interval when a directory is given
    # Steps run by one compiled call. 1 suits a CPU (a step is ~50 ms, a call ~0.1 ms);
    # more saves per-call launch overhead on a fast GPU.
    # Validation and the saved model use an exponential moving average of the weights with
    # this decay (0 = the raw weights); averaging the last ~1/(1-ema) steps smooths the noise
    # of the final updates.
    ema: float = 0.0
    steps_per_call: int = 1
    # The summed loss is read back from the device (progress, NaN/inf check) after this many
    # steps or 2 seconds, whichever comes first; reading it every step would stall a GPU.
    report_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("batch_size", "epochs", "truncate_length", "patience", "steps_per_call",
                     "report_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}")
        for name in ("learning_rate", "min_learning_rate"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.checkpoint_minutes <= 0:
            raise ValueError(f"checkpoint_minutes must be > 0, got {self.checkpoint_minutes}")
        if self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be > 0, got {self.clip_norm}")
        if self.validation_limit < 0:
            raise ValueError(f"validation_limit must be >= 0, got {self.validation_limit}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass(frozen=True)
class SampleConfig:
    """How to draw headlines from a model."""

    top_p: float = 0.9  # the article's "threshold": nucleus sampling
    temperature: float = 1.0
    top_k: int = 0  # 0 disables
    greedy: bool = False
    max_new_chars: int = 200  # the article's loop could run forever; rows stop here
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.max_new_chars < 1:
            raise ValueError(f"max_new_chars must be >= 1, got {self.max_new_chars}")


@dataclass(frozen=True)
class IngestConfig:
    """How raw headline rows become clean headlines (ingestion/)."""

    max_headline_length: int = 256  # cleaned headlines longer than this are quarantined
    lowercase: bool = False
    # Map every headline to the ABC style (ingestion/style.py: lowercase a-z, digits, single
    # spaces). Off by default so CSV datasets stay as they were; feed items always get it.
    normalise: bool = False
    validation_percent: int = 5  # hash split: the rest after test+validation is train
    test_percent: int = 5

    def __post_init__(self) -> None:
        if self.max_headline_length < 1:
            raise ValueError(
                f"max_headline_length must be >= 1, got {self.max_headline_length}")
        if not (0 <= self.validation_percent and 0 <= self.test_percent
                and self.validation_percent + self.test_percent < 100):
            raise ValueError(
                f"validation_percent + test_percent must be < 100, got "
                f"{self.validation_percent} + {self.test_percent}"
            )


C = TypeVar("C")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build a config from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**data)
