"""The champion: which model generation uses by default, and how a model earns the title.

The `champion` alias of the models kind names it. `train_challenger` is the one way training
reaches it, for the `train-headlines` flow, `charlm train` and the demo alike: train a
challenger, evaluate it and the current champion on the same test split, and promote the
challenger only if its bits per character is lower (the first model is promoted
unopposed). The decision is a compare-and-swap on the alias (`challenge_champion`): trainings
that finish together on any number of hosts leave the best of the models compared as the
champion. gc running beside them fails none: the challenger is pinned from its training to
its decision and the champion while it is scored, so a model dethroned meanwhile is still
there to compare with. `promote` crowns a model by hand (`charlm promote`). Every decision,
promotion or rejection, is recorded with its reason in the store's alias history (`charlm
versions`); a rejection is recorded as the champion kept in place.

A model version's manifest lists the dataset it was trained on in parents["datasets"],
which is how the training flow tells whether the champion has already seen the newest
headlines (`champion_status`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import ModelConfig, TrainConfig
from charlm.train import Callback
from storage import AliasMovedError, StorageError
from tasks.common import current_champion, open_store, run_logger, run_task
from tasks.evaluate import EvaluationOutcome, evaluate_model
from tasks.presets import CHAMPION
from tasks.train import TrainOutcome, train_model

__all__ = ["CHAMPION", "Challenge", "ChampionStatus", "challenge_champion", "champion_status",
           "promote", "record_decision", "should_promote", "train_challenger"]


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


@task(name="record-decision", cache_policy=NO_CACHE)
def record_decision(storage: str | None, challenger_id: str, champion: str | None,
                    promoted: bool, reason: str) -> bool:
    """Record a decision taken against champion `champion` (its alias's content; None: no
    alias): crown `challenger_id` if `promoted`, else keep the champion, with `reason` in the
    alias history. A compare-and-swap: False, and nothing recorded, when the champion moved
    since it was read, because the decision was taken against a model that no longer reigns."""
    store = open_store(storage)
    if not promoted and champion is None:
        return True  # no champion and a challenger that cannot be scored: nothing to record
    try:
        store.set_alias("models", CHAMPION, challenger_id if promoted else champion,
                        reason=reason, expect=champion)
    except AliasMovedError:
        return False
    run_logger().info("model %s %s: %s", challenger_id,
                      "promoted to champion" if promoted else "not promoted", reason)
    return True


def challenge_champion(storage: str | None, challenger: EvaluationOutcome,
                       dataset_id: str, note: str = "") -> tuple[EvaluationOutcome | None, bool]:
    """Compare `challenger` (its evaluation on the test split of `dataset_id`) with the
    champion on the same split and record the decision, with `note` (how the challenger was
    trained) after the reason: (the champion's evaluation, or None when there was none;
    whether the challenger was promoted).

    Other trainings may move the champion while this one compares (the nightly run and a
    `charlm train`, or two hosts): the decision is recorded only if the champion compared
    with still reigns (`record_decision`), else the challenger meets the new champion, and
    so on, so the champion is always the best of the models compared on that split.
    """
    store = open_store(storage)
    while True:
        held = store.aliases("models").get(CHAMPION)  # what the compare-and-swap expects
        champion_id = _existing_model(storage, held)  # None: no champion, or dangling
        try:
            champion = _evaluate_pinned(storage, champion_id, dataset_id) \
                if champion_id else None
        except _Removed:
            continue  # dethroned and removed by gc before we pinned it: read the new one
        challenger_bpc = challenger.metrics["bits_per_char"]
        champion_bpc = champion.metrics["bits_per_char"] if champion else None
        promoted = should_promote(challenger_bpc, champion_bpc)
        split = f"on the test split of dataset {dataset_id}"
        if champion is None:
            reason = f"first model: {challenger.model_id} {challenger_bpc:.4f} bits/char {split}"
        else:
            reason = (f"challenger {challenger.model_id} {challenger_bpc:.4f} vs champion "
                      f"{champion_id} {champion_bpc:.4f} bits/char {split}: "
                      + ("promoted" if promoted else "champion kept"))
        if note:
            reason += f"; {note}"
        if run_task(record_decision, storage, challenger.model_id, held, promoted, reason):
            return champion, promoted
        run_logger().info("the champion moved from %s while model %s was compared with it: "
                          "comparing with the new champion", held, challenger.model_id)


class _Removed(Exception):
    """The champion was removed (by gc, once dethroned) before it could be pinned."""


def _evaluate_pinned(storage: str | None, model_id: str, dataset_id: str) -> EvaluationOutcome:
    """Score the champion `model_id` on the test split, pinned meanwhile: another run may
    dethrone it while it is scored, and gc would then remove it, failing the evaluation's
    publish; pinned, it is scored and the decision taken against it is refused instead
    (record_decision), so the challenger meets the new champion."""
    store = open_store(storage)
    try:
        token = store.pin("models", model_id, f"champion evaluation pid {os.getpid()}")
    except StorageError:
        if store.aliases("models").get(CHAMPION) == model_id:
            raise  # still the champion: not a race
        raise _Removed() from None
    try:
        return run_task(evaluate_model, storage, model_id, dataset_id, "test")
    finally:
        store.unpin(token)


def _existing_model(storage: str | None, model_id: str | None) -> str | None:
    if model_id is None:
        return None
    try:
        return open_store(storage).resolve("models", model_id)
    except StorageError:
        return None  # garbage-collected or lost: the challenger replaces it unopposed


@dataclass(frozen=True)
class Challenge:
    """What `train_challenger` did: the new model, both evaluations, the decision."""

    trained: TrainOutcome
    challenger: EvaluationOutcome  # on the dataset's test split
    champion: EvaluationOutcome | None  # the champion it was last compared with (None: none)
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
    dataset's test split, and promote it if its test bits/char is lower
    (`challenge_champion`)."""
    trained = run_task(train_model, storage, dataset, network, training, precision, callbacks,
                       devices, start_from)
    # Pinned until the decision: neither aliased nor (once other runs publish) among the
    # newest, the challenger would otherwise be gc's to remove while it is evaluated, and
    # the run would fail after its training. (gc may still plan in the moment between the
    # model's publish and this pin.)
    with open_store(storage).pinned("models", trained.model_id,
                                    f"train-challenger pid {os.getpid()}"):
        challenger = run_task(evaluate_model, storage, trained.model_id, trained.dataset_id,
                              "test")
        # The alias history says how the challenger was trained: warm (from which model) or
        # cold.
        start = (f"warm-started from {trained.started_from}" if trained.started_from
                 else "trained from scratch")
        champion, promoted = challenge_champion(storage, challenger, trained.dataset_id, start)
    return Challenge(trained, challenger, champion, promoted)
