"""Champion bookkeeping: which model version the `champion` alias points to."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.common import open_store, run_logger


@task(name="promote-if-unset", cache_policy=NO_CACHE)
def promote_if_unset(storage: str | None, model_id: str) -> bool:
    """Make `model_id` the champion when there is none yet; True if it was promoted."""
    store = open_store(storage)
    if "champion" in store.aliases("models"):
        return False
    store.set_alias("models", "champion", model_id)
    run_logger().info("model %s promoted to champion (first model)", model_id)
    return True


@task(name="promote", cache_policy=NO_CACHE)
def promote(storage: str | None, model_id: str) -> None:
    open_store(storage).set_alias("models", "champion", model_id)
    run_logger().info("model %s promoted to champion", model_id)
