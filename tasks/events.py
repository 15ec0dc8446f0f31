"""Prefect events the pipeline emits, so automations (deployment triggers) can react to them.

`charlm.dataset.published` is emitted by the ingest flow after it published a dataset version;
prefect.yaml's `train-headlines/nightly` deployment has a trigger on it, so new headlines start
a training run without waiting for the nightly schedule.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from tasks.common import open_store, run_logger

DATASET_PUBLISHED = "charlm.dataset.published"
RESOURCE_PREFIX = "charlm.dataset."  # resource ids: charlm.dataset.<version id>


def dataset_resource(dataset_id: str, store_root: str) -> dict[str, str]:
    """The event's primary resource: one dataset version of one store."""
    return {
        "prefect.resource.id": RESOURCE_PREFIX + dataset_id,
        "prefect.resource.name": dataset_id,
        "charlm.kind": "datasets",
        "charlm.store": store_root,
    }


@task(name="emit-dataset-published", cache_policy=NO_CACHE)
def emit_dataset_published(storage: str | None, dataset_id: str,
                           details: dict[str, Any] | None = None) -> str | None:
    """Emit `charlm.dataset.published` for `dataset_id`; the event id (None if not sent).

    Prefect only sends events when an API is configured (never from the plain CLI), and
    emit_event swallows transport errors: a lost event must not fail an ingestion whose
    dataset is already published; the nightly schedule picks the data up anyway.
    """
    root = str(open_store(storage).root)
    payload = {"dataset_id": dataset_id, "store": root, **(details or {})}
    event = emit_event(DATASET_PUBLISHED, resource=dataset_resource(dataset_id, root),
                       payload=payload)
    if event is None:
        run_logger().warning("event %s for dataset %s was not emitted (no Prefect API?)",
                             DATASET_PUBLISHED, dataset_id)
        return None
    run_logger().info("emitted %s for dataset %s (event %s)", DATASET_PUBLISHED, dataset_id,
                      event.id)
    return str(event.id)
