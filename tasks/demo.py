"""The demo: the whole pipeline on the embedded corpus, as a composition of the operations.

Put the demo corpus (charlm.demo_corpus) into the store's inbox, ingest it
(tasks.ingest), train a small model and let it challenge the champion
(tasks.champion.train_challenger), and generate headlines (tasks.generate): the very
operations `charlm ingest`, `charlm train` and `charlm generate` run, with a small model.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from charlm.config import SampleConfig
from charlm.demo_corpus import make_corpus
from charlm.train import Callback
from ingestion.csv_reader import COLUMNS
from storage.layout import demo_corpus_name
from tasks.champion import Challenge, train_challenger
from tasks.common import open_store, run_logger, run_task
from tasks.generate import GenerationOutcome, generate_headlines
from tasks.ingest import IngestOutcome, ingest_csvs
from tasks.presets import DEMO_HEADLINES, DEMO_N, DEMO_NETWORK, DEMO_TRAINING


@dataclass(frozen=True)
class DemoOutcome:
    corpus: str  # the CSV put into the inbox: its path, or its URL in an object store
    ingested: IngestOutcome
    challenge: Challenge
    generated: GenerationOutcome
    seconds: float


@task(name="write-demo-corpus", cache_policy=NO_CACHE)
def write_demo_corpus(storage: str | None, n: int, seed: int) -> str:
    """Put the embedded demo corpus as an ABC-format CSV into the store's inbox; its address
    there (a path in a directory store, a URL in an object store)."""
    rows = make_corpus(n, np.random.default_rng(seed))
    buffer = io.BytesIO()
    pl.DataFrame(rows, schema=list(COLUMNS), orient="row").write_csv(buffer)
    return open_store(storage).inbox.put(demo_corpus_name(n, seed), buffer.getvalue())


def ingest_demo_corpus(storage: str | None, n: int, seed: int) -> IngestOutcome:
    """Ingest the corpus `write_demo_corpus` put into the inbox, from a local file (an
    object store's is downloaded, then dropped). It stays in the inbox, as before: an
    inbox run finds nothing new in it."""
    inbox = open_store(storage).inbox
    name = demo_corpus_name(n, seed)
    local = inbox.local_copy(name)
    try:
        return run_task(ingest_csvs, storage, [str(local)], origins=[inbox.address(name)])
    finally:
        inbox.discard(local)


def run_demo(storage: str | None, headlines: int = DEMO_HEADLINES,
             max_minutes: float = DEMO_TRAINING.max_minutes, n: int = DEMO_N, seed: int = 0,
             callbacks: Sequence[Callback] = ()) -> DemoOutcome:
    """Corpus -> dataset -> model (champion if it beats the current one) -> headlines."""
    start = time.monotonic()
    log = run_logger()
    network = replace(DEMO_NETWORK, seed=seed)
    training = replace(DEMO_TRAINING, max_minutes=max_minutes, seed=seed)
    corpus = run_task(write_demo_corpus, storage, headlines, seed)
    log.info("[1/4] wrote the embedded demo corpus: %s", corpus)
    ingested = ingest_demo_corpus(storage, headlines, seed)
    log.info("[2/4] training %s %dx%d for up to %s min", network.cell, network.hidden,
             network.depth, max_minutes)
    challenge = train_challenger(storage, ingested.dataset_id, network, training, "auto",
                                 callbacks)
    m = challenge.challenger.metrics
    log.info("[3/4] test: %.4f bits/char, perplexity %.3f over %d characters; of %d samples "
             "%.0f%% are novel, %.0f%% of words are known; report: %s", m["bits_per_char"],
             m["perplexity"], m["characters"], m["generated_headlines"], 100 * m["novelty"],
             100 * m["word_validity"], challenge.challenger.report)
    generated = generate_headlines(storage, challenge.trained.model_id, n,
                                   SampleConfig(seed=seed))
    return DemoOutcome(corpus, ingested, challenge, generated, time.monotonic() - start)
