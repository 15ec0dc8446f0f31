"""tasks.champion: the training flow's "is the champion up to date?" and "promote?" rules."""

from __future__ import annotations

import math

import pytest

from storage import StorageError, Store
from tasks.champion import champion_status, should_promote


def test_no_champion_yet(storage, publish):
    dataset = publish("datasets")
    status = champion_status.fn(storage, "latest")
    assert status.dataset_id == dataset
    assert status.champion_id is None
    assert not status.up_to_date


def test_champion_trained_on_the_latest_dataset_is_up_to_date(storage, publish):
    dataset = publish("datasets")
    model = publish("models", parents={"datasets": [dataset]})
    Store(storage).set_alias("models", "champion", model)
    status = champion_status.fn(storage, "latest")
    assert (status.champion_id, status.champion_datasets) == (model, [dataset])
    assert status.up_to_date


def test_a_newer_dataset_makes_the_champion_stale(storage, publish):
    old = publish("datasets")
    model = publish("models", parents={"datasets": [old]})
    Store(storage).set_alias("models", "champion", model)
    new = publish("datasets", parents={"datasets": [old]})
    assert not champion_status.fn(storage, "latest").up_to_date
    assert champion_status.fn(storage, new).dataset_id == new
    assert champion_status.fn(storage, old).up_to_date  # explicit old version: nothing to do


def test_unknown_dataset_is_an_error(storage, publish):
    with pytest.raises(StorageError):
        champion_status.fn(storage, "latest")


@pytest.mark.parametrize(("challenger", "champion", "expected"), [
    (2.0, None, True),  # first model
    (1.9, 2.0, True),
    (2.0, 2.0, False),  # a tie keeps the champion
    (2.1, 2.0, False),
    (math.nan, None, False),  # a broken challenger never wins
    (math.inf, 2.0, False),
    (2.0, math.nan, True),  # a champion that cannot be scored loses
])
def test_should_promote(challenger, champion, expected):
    assert should_promote(challenger, champion) is expected
