"""tasks.events: what the `charlm.dataset.published` event carries."""

from __future__ import annotations

from types import SimpleNamespace

import tasks.events
from storage import Store
from tasks.events import DATASET_PUBLISHED, dataset_resource, emit_dataset_published


def test_resource_names_the_dataset_and_store():
    resource = dataset_resource("20260101-000000-000000-abcdef", "/data/store")
    assert resource["prefect.resource.id"] == "charlm.dataset.20260101-000000-000000-abcdef"
    assert resource["prefect.resource.name"] == "20260101-000000-000000-abcdef"
    assert resource["charlm.store"] == "/data/store"


def test_emit_sends_id_in_resource_and_payload(storage, monkeypatch):
    sent = []

    def fake_emit(event, resource, payload=None, **kwargs):
        sent.append((event, resource, payload))
        return SimpleNamespace(id="event-1")

    monkeypatch.setattr(tasks.events, "emit_event", fake_emit)
    assert emit_dataset_published.fn(storage, "ds-1", {"new_rows": 5}) == "event-1"
    [(name, resource, payload)] = sent
    assert name == DATASET_PUBLISHED
    assert resource["prefect.resource.id"] == "charlm.dataset.ds-1"
    assert payload == {"dataset_id": "ds-1", "store": str(Store(storage).root), "new_rows": 5}


def test_not_emitted_is_not_an_error(storage, monkeypatch):
    # emit_event returns None when no Prefect API is configured (the plain CLI).
    monkeypatch.setattr(tasks.events, "emit_event", lambda *a, **k: None)
    assert emit_dataset_published.fn(storage, "ds-1") is None
