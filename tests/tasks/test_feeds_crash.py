"""Exactly once under SIGKILL: `charlm ingest-feed` killed at random moments between its fetch
and the end of its publish loses no item and stores none twice.

Two live feeds grow by a few items in most rounds (feed B repeats some of feed A's items, as
the ABC's feeds do; in the other rounds they answer 304). Every round starts `charlm
ingest-feed` as a real process, waits until the server has answered its first request, then
SIGKILLs it after a random delay drawn over the time a whole run takes from that moment
(calibrated by an unkilled run). A kill counts only when the process was still running.
Afterwards one unkilled run publishes what waits, and every item ever served is in the
buffer and in the latest dataset version exactly once, and the dataset versions made from
the buffer hold consecutive, non-overlapping runs of it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from feedserver import conditional, rss, rss_item

from storage import Store
from storage.datasets import read_headlines

KILLS = 20  # at least this many kills that hit a running process
MAX_ROUNDS = 80
PER_ROUND = 9  # new items in each feed per round
ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def title(feed: str, n: int) -> str:
    return f"Crash test {feed} story {n}: 'quoted' $1.{n}m"


def headline(feed: str, n: int) -> str:
    return f"crash test {feed} story {n} quoted 1{n}m"


class Feeds:
    """Feed A: items a0..; feed B: b0.. plus every third item of A (same guid)."""

    def __init__(self, server) -> None:
        self.server = server
        self.round = 0
        self.urls = [server.url("/a.xml"), server.url("/b.xml")]
        self.expected: set[str] = set()
        self.grow()

    def grow(self) -> None:
        self.round += 1
        size = self.round * PER_ROUND
        a = [rss_item(title("a", n), guid=f"urn:a:{n}") for n in range(size)]
        b = [rss_item(title("b", n), guid=f"urn:b:{n}") for n in range(size)] + [
            rss_item(title("a", n), guid=f"urn:a:{n}") for n in range(0, size, 3)]
        self.server.serve("/a.xml", conditional(rss(a), etag=f'"a{self.round}"'))
        self.server.serve("/b.xml", conditional(rss(b), etag=f'"b{self.round}"'))
        self.expected = {headline(f, n) for f in "ab" for n in range(size)}


def start(storage: Path, urls: list[str], *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--storage", str(storage), "ingest-feed", *urls,
         "--min-new", "12", *options],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_first_request(server, before: int, process: subprocess.Popen) -> float:
    """Wait until the server has seen a request of this run; the moment it saw it."""
    deadline = time.monotonic() + 60
    while len(server.requests) == before:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the ingest-feed process made no request"
        time.sleep(0.005)
    return time.monotonic()


def test_random_sigkills_between_fetch_and_publish_lose_and_duplicate_nothing(
        tmp_path, feed_server) -> None:
    rng = random.Random(int(os.environ.get("CHARLM_CRASH_SEED", "20240501")))
    storage = tmp_path / "store"
    feeds = Feeds(feed_server)

    # Calibration (unkilled): how long a run takes from its first request to its exit.
    before = len(feed_server.requests)
    process = start(storage, feeds.urls)
    fetched = wait_for_first_request(feed_server, before, process)
    assert process.wait(120) == 0, process.stderr.read().decode()[-2000:]
    window = (time.monotonic() - fetched) * 1.2
    process.stderr.close()

    kills = rounds = 0
    while kills < KILLS and rounds < MAX_ROUNDS:
        rounds += 1
        if rng.random() < 0.7:
            feeds.grow()
        before = len(feed_server.requests)
        process = start(storage, feeds.urls)
        try:
            wait_for_first_request(feed_server, before, process)
            time.sleep(rng.uniform(0.0, window))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stderr.close()
    assert kills >= KILLS, f"only {kills} kills hit a running process in {rounds} rounds"

    final = start(storage, feeds.urls, "--max-wait-hours", "0")  # publish whatever waits
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]

    store = Store(storage)
    assert store.verify() == []
    buffered = store.feeds.items()
    guids = [item.guid for item in buffered]
    assert len(guids) == len(set(guids))  # no item twice
    assert {item.headline for item in buffered} == feeds.expected  # none lost
    assert len(buffered) == len(feeds.expected)
    assert store.feeds.pending() == []
    heads = read_headlines(store.path("datasets", "latest")).collect()
    counts = heads.group_by("headline").len()
    assert counts.filter(pl.col("len") > 1).height == 0
    assert set(heads["headline"].to_list()) == feeds.expected
    assert heads["row"].n_unique() == heads.height  # one row per buffer item
    ranges = sorted((m["params"]["feed_buffer"]["first"], m["params"]["feed_buffer"]["through"])
                    for m in store.versions("datasets"))
    assert ranges[0][0] == 1 and ranges[-1][1] == len(buffered)
    for (_, through), (first, _) in zip(ranges, ranges[1:]):
        assert first == through + 1, ranges  # each buffer item published by one version
    published = len(ranges)
    print(f"\n{kills} SIGKILLs in {rounds} rounds (window {window:.2f} s), "
          f"{published} dataset versions, {len(buffered)} items each stored once")
