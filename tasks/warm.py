"""Warm starts: a training run that begins from a stored model's weights, not random ones.

A warm-started run takes its network (cell, shape) from the model it starts from, loads that
model's weights, and trains them with a fresh optimizer (warm-up and schedule as any run,
peak TrainConfig.warm_learning_rate). The new model's manifest names its starting model in
parents["models"], so `charlm versions` shows the chain of warm starts.

`start_network` checks a starting model the user named (`charlm train --from`): every
problem is a ValueError naming the model, raised before anything trains or is published.
`choose_start` is the flow's rule: warm from the champion when its network is the
configured one, else from scratch, with the reason either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from charlm.config import ModelConfig
from tasks.common import current_champion, open_store
from tasks.presets import CHAMPION

WarmStartChoice = Literal["champion", "none"]
# The ModelConfig fields that fix the weights' shapes: a run can start from a model only if
# these agree (dropout, weight drop and seed may differ: they change training, not the
# weights).
SHAPE_FIELDS: tuple[str, ...] = ("cell", "hidden", "depth", "embedding", "gru_variant")


@dataclass(frozen=True)
class WarmStart:
    """Where a run starts: from model `model_id`'s weights, or from scratch (None)."""

    model_id: str | None
    reason: str  # why (the log, the train report and the alias history say it)

    @property
    def label(self) -> str:
        """'warm from <id>' or 'cold': how reports name the start."""
        return f"warm from {self.model_id}" if self.model_id else "cold"


def read_network(storage: str | None, model: str) -> tuple[str, ModelConfig]:
    """(id, network) of stored model `model` (id or alias), its files verified first;
    ValueError naming the model when it is missing, corrupt or of another vocabulary."""
    from charlm.model import read_config
    from storage.layout import ModelFiles

    store = open_store(storage)
    try:
        model_id = store.resolve("models", model)
        files = ModelFiles.at(store.path("models", model_id))  # verifies checksums
        network, _ = read_config(files)  # checks the format and the vocabulary
    except ValueError as error:  # StorageError is one
        raise ValueError(f"cannot start from model {model}: {error}") from None
    return model_id, network


def shape_conflicts(network: ModelConfig, given: Mapping[str, Any], prefix: str = ""
                    ) -> list[str]:
    """'<prefix><field> <given> (model has <its>)' for each given shape field the network
    differs in (prefix "--" names the command line's options)."""
    return [f"{prefix}{name.replace('_', '-') if prefix else name} {given[name]} "
            f"(model has {getattr(network, name)})"
            for name in SHAPE_FIELDS if name in given and given[name] != getattr(network, name)]


def start_network(storage: str | None, model: str, given: Mapping[str, Any] | None = None
                  ) -> tuple[str, ModelConfig]:
    """(id, network) of the model a run starts from: its own network, with the fields in
    `given` that do not fix the weights (dropout, weight drop, seed) replaced. ValueError naming the
    model when it is unusable or a given shape field conflicts with it."""
    given = dict(given or {})
    unknown = sorted(set(given) - {f.name for f in fields(ModelConfig)})
    assert not unknown, f"not ModelConfig fields: {unknown}"
    model_id, network = read_network(storage, model)
    conflicts = shape_conflicts(network, given, prefix="--")
    if conflicts:
        raise ValueError(f"cannot start from model {model} ({model_id}): "
                         f"{'; '.join(conflicts)}; the network comes from the model, drop "
                         "the option or train from scratch")
    free = {k: v for k, v in given.items() if k not in SHAPE_FIELDS}
    return model_id, replace(network, **free)


def same_network(a: ModelConfig, b: ModelConfig) -> bool:
    """True when two networks differ at most in their seed (the flow's configuration)."""
    return replace(a, seed=0) == replace(b, seed=0)


def choose_start(storage: str | None, warm_start: WarmStartChoice,
                 network: ModelConfig) -> WarmStart:
    """The flow's rule: warm from the champion when `warm_start` is "champion" and the
    champion is a usable model with the configured `network`; else from scratch."""
    if warm_start not in ("champion", "none"):
        raise ValueError(f"warm_start must be 'champion' or 'none', got {warm_start!r}")
    if warm_start == "none":
        return WarmStart(None, "from scratch: warm_start is none")
    champion_id = current_champion(storage)
    if champion_id is None:
        return WarmStart(None, "from scratch: no champion yet")
    try:
        _, champion_network = read_network(storage, champion_id)
    except ValueError as error:
        return WarmStart(None, f"from scratch: {error}")
    if not same_network(champion_network, network):
        changed = [f"{f.name} {getattr(champion_network, f.name)} -> "
                   f"{getattr(network, f.name)}" for f in fields(ModelConfig)
                   if f.name != "seed" and getattr(champion_network, f.name)
                   != getattr(network, f.name)]
        return WarmStart(None, f"from scratch: the configured network differs from champion "
                               f"{champion_id}'s ({', '.join(changed)})")
    return WarmStart(champion_id, f"warm from {CHAMPION} {champion_id}")
