"""The champion: which model generation uses by default, and how a model earns the title.

The `champion` alias of the models kind names it. `train_challenger` is the one way training
reaches it, for the `train-headlines` flow, `charlm train` and the demo alike: train a
challenger, evaluate it and the current champion on the same test split, and promote the
challenger only if its bits per character is lower (the first model is promoted
unopposed). `promote` crowns a model by hand (`charlm promote`). Every change of the
champion is recorded with its reason in the store's alias history (`charlm versions`).

A model version's manifest lists the dataset it was trained on in parents["datasets"],
which is how the training flow tells whether the champion has already seen the newest
headlines (`champion_status`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import ModelConfig, TrainConfig
from charlm.train import Callback
from tasks.common import current_champion, open_store, run_logger, run_task
from tasks.evaluate import EvaluationOutcome, evaluate_model
from tasks.presets import CHAMPION
from tasks.train import TrainOutcome, train_model

__all__ = ["CHAMPION", "Challenge", "ChampionStatus", "champion_status", "promote",
           "promote_if_unset", "should_promote", "train_challenger"]


@dataclass(frozen=True)
class ChampionStatus:
    dataset_id: str  # the dataset reference resolved to a version id
    champion_id: str | None  # None when no champion exists yet (or its alias is dangling)
    champion_datasets: list[str] = field(default_factory=list)  # what the champion trained on

    @property
    def up_to_date(self) -> bool:
        """True when the champion was trained on exactly this dataset version."""
        return self.champion_id is not None and self.dataset_id in self.champion_datasets


@task(name="champion-status", cache_policy=NO_CACHE)
def champion_status(storage: str | None, dataset: str = "latest") -> ChampionStatus:
    """Resolve `dataset` and describe the current champion's lineage."""
    store = open_store(storage)
    dataset_id = store.resolve("datasets", dataset)
    # A champion garbage-collected or lost counts as none: train a new one rather than fail
    # forever; the next promotion repairs the alias.
    champion_id = current_champion(storage)
    if champion_id is None:
        return ChampionStatus(dataset_id, None)
    parents = store.manifest("models", champion_id).get("parents", {})
    return ChampionStatus(dataset_id, champion_id, list(parents.get("datasets", [])))


def should_promote(challenger_bpc: float, champion_bpc: float | None) -> bool:
    """Promote when there is no champion or the challenger's test bits/char is strictly lower.

    Ties keep the champion: a model is only replaced for a measurable gain. A NaN/inf
    challenger is never promoted.
    """
    if not math.isfinite(challenger_bpc):
        return False
    if champion_bpc is None or not math.isfinite(champion_bpc):
        return True
    return challenger_bpc < champion_bpc


@task(name="promote", cache_policy=NO_CACHE)
def promote(storage: str | None, model: str, reason: str) -> str:
    """Make `model` (id, alias or id prefix) the champion, recording `reason`; its id."""
    if not reason.strip():
        raise ValueError("a promotion needs a reason (it is recorded in the alias history)")
    store = open_store(storage)
    model_id = store.resolve("models", model)
    store.set_alias("models", CHAMPION, model_id, reason=reason)
    run_logger().info("model %s promoted to champion: %s", model_id, reason)
    return model_id


@task(name="promote-if-unset", cache_policy=NO_CACHE)
def promote_if_unset(storage: str | None, model_id: str, reason: str) -> bool:
    """Make `model_id` the champion when there is none yet; True if it was promoted."""
    store = open_store(storage)
    if CHAMPION in store.aliases("models"):
        return False
    store.set_alias("models", CHAMPION, model_id, reason=reason)
    run_logger().info("model %s promoted to champion: %s", model_id, reason)
    return True


@dataclass(frozen=True)
class Challenge:
    """What `train_challenger` did: the new model, both evaluations, the decision."""

    trained: TrainOutcome
    challenger: EvaluationOutcome  # on the dataset's test split
    champion: EvaluationOutcome | None  # the champion before the run, same split (None: none)
    promoted: bool

    @property
    def challenger_bpc(self) -> float:
        return self.challenger.metrics["bits_per_char"]

    @property
    def champion_bpc(self) -> float | None:
        return self.champion.metrics["bits_per_char"] if self.champion else None


def train_challenger(storage: str | None, dataset: str, network: ModelConfig,
                     training: TrainConfig, precision: str = "auto",
                     callbacks: Sequence[Callback] = (), devices: int | str = 1,
                     start_from: str | None = None) -> Challenge:
    """Train a model on `dataset` (on `devices`, see charlm.devices; from model
    `start_from`'s weights when given, tasks.warm), evaluate it and the champion on the
    dataset's test split, and promote it if its test bits/char is lower."""
    trained = run_task(train_model, storage, dataset, network, training, precision, callbacks,
                       devices, start_from)
    dataset_id = trained.dataset_id
    challenger = run_task(evaluate_model, storage, trained.model_id, dataset_id, "test")
    champion_id = run_task(champion_status, storage, dataset_id).champion_id
    champion = (run_task(evaluate_model, storage, champion_id, dataset_id, "test")
                if champion_id else None)
    challenge = Challenge(trained, challenger, champion, False)
    log = run_logger()
    if not should_promote(challenge.challenger_bpc, challenge.champion_bpc):
        log.info("champion %s stays: test %.4f bits/char vs the challenger's %.4f",
                 champion_id, challenge.champion_bpc, challenge.challenger_bpc)
        return challenge
    # The alias history says how the new champion was trained: warm (from which model) or cold.
    start = (f"; warm-started from {trained.started_from}" if trained.started_from
             else "; trained from scratch")
    split = f"test split of dataset {dataset_id}"
    if champion_id is None:
        # promote_if_unset, not promote: another run may have crowned a model meanwhile.
        promoted = run_task(promote_if_unset, storage, trained.model_id,
                            f"first model: {challenge.challenger_bpc:.4f} bits/char on the "
                            f"{split}{start}")
    else:
        promoted = bool(run_task(
            promote, storage, trained.model_id,
            f"beat champion {champion_id} on the {split}: {challenge.challenger_bpc:.4f} < "
            f"{challenge.champion_bpc:.4f} bits/char{start}"))
    return Challenge(trained, challenger, champion, promoted)
