"""Importing the article's saved model format as a charlm model version."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.article import read_article, to_keras
from charlm.config import to_dict
from charlm.model import count_parameters, save_model
from storage.fsutil import sha256_file
from storage.layout import ModelFiles
from tasks.common import open_store, run_logger


@task(name="import-article", cache_policy=NO_CACHE)
def import_article(storage: str | None, directory: str) -> str:
    """Publish the model saved by the article's save() in `directory`; its model id."""
    source = Path(directory)
    article = read_article(source)
    model, config = to_keras(article)
    store = open_store(storage)
    files = {str(p.relative_to(source)): sha256_file(p)
             for p in sorted(source.rglob("*")) if p.is_file()}
    with store.publish("models", params={"model": to_dict(config), "imported_from": str(source),
                                         "source_files": files}) as staging:
        save_model(model, config, ModelFiles.at(staging.path),
                   extra={"imported_from": str(source)})
        staging.summary.update(imported=True, parameters=count_parameters(model))
    run_logger().info("imported the article's %s %dx%d model from %s as %s", article.cell,
                      article.hidden, article.depth, source, staging.id)
    return staging.id
