"""Several feed pollers at once on an S3 store (moto's server): `charlm ingest-feed`
processes started together, round after round, store every served item exactly once, in
the buffer and in the dataset versions made from it (the lease and compare-and-swap of
storage.feed_files, no lock file)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from test_feeds_crash import Feeds

from storage import Store
from storage.datasets import read_headlines

POLLERS = 3
ROUNDS = 4
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def start(url: str, env: dict, urls: list[str], *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli.main", "--storage", url,
                             "ingest-feed", *urls, "--min-new", "12", *options],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_pollers_at_once_store_each_item_once(feed_server, s3_server, s3_store_url,
                                              tmp_path) -> None:
    env = {**os.environ, **s3_server.env, "PYTHONPATH": str(ROOT),
           "CHARLM_CACHE": str(tmp_path / "cache")}
    feeds = Feeds(feed_server)
    for _ in range(ROUNDS):
        feeds.grow()
        pollers = [start(s3_store_url, env, feeds.urls) for _ in range(POLLERS)]
        for poller in pollers:
            _, err = poller.communicate(timeout=300)
            assert poller.returncode == 0, err.decode()[-2000:]
    final = start(s3_store_url, env, feeds.urls, "--max-wait-hours", "0")
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()[-2000:]

    store = Store(s3_store_url)
    assert store.verify() == []
    buffered = store.feeds.items()
    assert [i.seq for i in buffered] == list(range(1, len(buffered) + 1))
    assert len({i.guid for i in buffered}) == len(buffered)
    assert {i.headline for i in buffered} == feeds.expected
    assert store.feeds.pending() == []
    heads = read_headlines(store.path("datasets", "latest")).collect()
    assert heads.group_by("headline").len().filter(pl.col("len") > 1).height == 0
    assert set(heads["headline"].to_list()) == feeds.expected
    ranges = sorted((m["params"]["feed_buffer"]["first"], m["params"]["feed_buffer"]["through"])
                    for m in store.versions("datasets"))
    for (_, through), (first, _) in zip(ranges, ranges[1:]):
        assert first == through + 1, ranges
    print(f"\n{POLLERS} pollers x {ROUNDS} rounds: {len(buffered)} items each stored once, "
          f"{len(ranges)} dataset versions")
