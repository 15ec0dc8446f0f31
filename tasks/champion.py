"""Champion/challenger decisions for the training flow (reads the store, never trains).

The `champion` alias of the models kind names the model that generation uses by default. A
model version's manifest lists the dataset it was trained on in parents["datasets"], which is
how the training flow tells whether the champion has already seen the newest headlines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prefect import task
from prefect.cache_policies import NO_CACHE

from storage import StorageError
from tasks.common import open_store

CHAMPION = "champion"


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
    if CHAMPION not in store.aliases("models"):
        return ChampionStatus(dataset_id, None)
    try:
        champion_id = store.resolve("models", CHAMPION)
    except StorageError:
        # The champion's version was garbage-collected or lost: train a new one rather than
        # fail forever; the next promotion repairs the alias.
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
