"""Every tunable of charlm in one place: frozen dataclasses with flat fields.

The CLI, the Prefect flows and the tests all build these; defaults here are the
documented defaults everywhere else (the CLI and flow parameters read them).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

Cell = Literal["gru", "lstm", "rnn"]
CELLS: tuple[str, ...] = get_args(Cell)
# Training precision: auto = mixed_float16 on a GPU, mixed_bfloat16 on CPUs with bfloat16
# instructions, else float32 (charlm.model.resolve_precision).
Precision = Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


def require(config: Any, rule: str, *names: str) -> None:
    """Raise ``ValueError("<name> must be <rule>, got <value>")`` for the first of `names`
    whose field breaks `rule`: ``">= N"`` or ``"> N"`` (N a whole number), or an interval
    ``"in [a, b)"`` / ``"in (a, b]"`` (a bracket includes its end, a parenthesis excludes it).

    The one home of the configs' bound checks (these and `ingestion.feed_fetch.FetchConfig`).
    """
    broken = _breaks(rule)
    for name in names:
        value = getattr(config, name)
        if broken(value):
            raise ValueError(f"{name} must be {rule}, got {value}")


def _breaks(rule: str) -> Callable[[Any], bool]:
    """The test a value fails `rule` by (a value that is NaN breaks intervals only)."""
    kind, _, bound = rule.partition(" ")
    if kind in (">=", ">"):
        limit = int(bound)
        return (lambda v: v < limit) if kind == ">=" else (lambda v: v <= limit)
    assert kind == "in" and bound[0] in "[(" and bound[-1] in ")]", rule
    low, high = (float(end) for end in bound[1:-1].split(","))
    from_low = operator.le if bound[0] == "[" else operator.lt
    to_high = operator.le if bound[-1] == "]" else operator.lt
    return lambda v: not (from_low(low, v) and to_high(v, high))


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network: embedding -> `depth` recurrent layers -> softmax."""

    # The tuned default (see docs/quality.md): on 2 CPU cores a GRU learns far faster per
    # minute than an LSTM of the same width. With the fused kernels 30 minutes hold ~33
    # epochs of 512x2, which then beat 384x2's ~58 (validation 1.7089 vs 1.7354 bits/char
    # with dropout 0.2 and EMA; benchmarks/HISTORY.md, "variants tried for the fast path").
    cell: Cell = "gru"
    hidden: int = 512  # the article's inter_time_step_size
    depth: int = 2
    embedding: int = 64  # 0 means one-hot input (identity embedding), as in the article
    dropout: float = 0.2  # between stacked layers and before the softmax; 0 disables
    # DropConnect on each recurrent layer's recurrent kernel while training (AWD-LSTM's weight
    # drop: one mask per training step for every time step); 0 disables. GRU and LSTM only.
    weight_drop: float = 0.0
    # "keras" GRUs use reset_after=True (cuDNN-eligible); "article" applies the
    # relevance gate before the matmul, as the article does (used by import-article).
    gru_variant: Literal["keras", "article"] = "keras"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        require(self, ">= 1", "hidden", "depth")
        require(self, ">= 0", "embedding")
        require(self, "in [0, 1)", "dropout", "weight_drop")
        if self.weight_drop and self.cell == "rnn":
            raise ValueError(f"weight_drop is for gru and lstm cells, got {self.weight_drop} "
                             "with cell 'rnn'")
        if self.gru_variant not in ("keras", "article"):
            raise ValueError(f"gru_variant must be 'keras' or 'article', got {self.gru_variant!r}")


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a model: optimisation, budget, batching."""

    batch_size: int = 128  # at 384x2: 1.15-1.35x the chars/s of 64, lower loss per epoch
    # A cap, not the plan: the learning-rate schedule spans the epochs or the time budget,
    # whichever ends first, and on a 2-core CPU the 30 minutes end first. A cap of 30 ended
    # the default run at 12.9 minutes on a Zen 5 VM (validation 1.7443 bits/char); with the
    # budget binding it ran 64 epochs, early-stopped at 26.7 minutes (1.7354;
    # benchmarks/HISTORY.md, "Quality: the epoch cap and GRU 512x2").
    epochs: int = 100
    max_minutes: float = 30.0  # hard wall-clock budget; training stops cleanly when reached
    learning_rate: float = 5e-3  # peak, after warm-up; cosine decay to min_learning_rate
    # The peak instead of learning_rate when the run starts from a trained model's weights
    # (a warm start: fresh optimizer, same warm-up and schedule). Chosen on validation
    # (docs/continual.md): 1-minute warm runs from 2-, 6- and 15-minute champions scored
    # 5e-3 < 2e-3 < 1e-3 bits/char, and five 5-minute nights of a chain of GRU 512x2
    # champions at 2e-3 trailed 5e-3 every night (the lower peak overfits within the night).
    warm_learning_rate: float = 5e-3
    min_learning_rate: float = 1e-4  # end of the cosine decay over the time budget
    clip_norm: float = 1.0  # global gradient-norm clipping
    # Decoupled (AdamW) decay of every weight but the biases. 30-minute runs on ABC 2003
    # (benchmarks/HISTORY.md, "Quality: recipe variants"): 0.3 beat 0.15 on validation;
    # 10-epoch runs preferred 0.15 of 0 / 0.05 / 0.15 / 0.4, a longer run wants more
    # regularisation.
    weight_decay: float = 0.3
    # Epochs without validation improvement before early stopping, counted from half-way
    # through the learning-rate schedule (charlm.train.EARLY_STOP_FROM).
    patience: int = 3
    truncate_length: int = 256  # longer headlines are cut for training (ingestion caps them)
    validation_limit: int = 5000  # validation headlines scored each epoch (all if 0)
    checkpoint_minutes: float = 2.0  # mid-epoch checkpoint interval when a directory is given
    # Validation and the saved model use an exponential moving average of the weights with
    # this decay (0 = the raw weights); averaging the last ~1/(1-ema) steps (~3 epochs of
    # 41k headlines) smooths the noise of the final updates. Part of the tuned default.
    ema: float = 0.999
    # Recency weighting: each training headline published in the dataset's newest
    # `recent_days` days (by publish date, as `charlm evaluate --split recent:DAYS`) is seen
    # `recent_repeats` times an epoch; 1 = every headline once. For nightly retrains, whose
    # newest headlines are the least known and the likeliest to resemble tomorrow's.
    recent_repeats: int = 1
    recent_days: int = 30  # about a month of news
    # Steps run by one compiled call; 0 = as many as take about a quarter of a second,
    # measured on the previous call (charlm.train.CALL_SECONDS). A call costs ~1.4 ms to
    # launch on a CPU (4% of a 35 ms step at 128 units), more on a fast GPU.
    steps_per_call: int = 0
    # The summed loss is read back from the device (progress, NaN/inf check) after this many
    # steps or 2 seconds, whichever comes first; reading it every step would stall a GPU.
    report_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        require(self, ">= 1", "batch_size", "epochs", "truncate_length", "patience",
                "report_every", "recent_repeats", "recent_days")
        require(self, "> 0", "max_minutes", "learning_rate", "warm_learning_rate",
                "min_learning_rate",
                "checkpoint_minutes", "clip_norm")
        require(self, ">= 0", "validation_limit", "weight_decay", "steps_per_call")
        require(self, "in [0, 1)", "ema")

    def warm(self) -> TrainConfig:
        """This config for a run that starts from trained weights: warm_learning_rate is the
        peak (and caps the end of the decay), everything else as is."""
        return dataclasses.replace(
            self, learning_rate=self.warm_learning_rate,
            min_learning_rate=min(self.min_learning_rate, self.warm_learning_rate))


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
        require(self, "in (0, 1]", "top_p")
        require(self, "> 0", "temperature")
        require(self, ">= 0", "top_k")
        require(self, ">= 1", "max_new_chars")


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
        require(self, ">= 1", "max_headline_length")
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
