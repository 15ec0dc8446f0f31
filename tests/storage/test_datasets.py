"""Dataset version files: written from an ingestion plan, read back lazily, checked."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from charlm.config import IngestConfig
from ingestion.plan import IngestPlan, plan_ingest, write_version
from storage.datasets import (
    FORMAT,
    HEADLINES_SCHEMA,
    QUARANTINE_SCHEMA,
    RECENT_DAYS,
    check_split,
    read_headlines,
    read_quarantine,
    read_texts,
    read_view,
    recent_days,
    write_dataset,
)
from storage.layout import DatasetFiles

CONFIG = IngestConfig()


def publish(plan: IngestPlan, directory: Path) -> dict:
    directory.mkdir()
    return write_version(plan, directory)


def test_write_and_read_dataset(tmp_path: Path, csv_file) -> None:
    body = b"".join(f"200302{10 + i % 18},headline {i}\n".encode() for i in range(300))
    plan = plan_ingest(None, [csv_file(tmp_path, "a.csv", body + b"bad,x\n")], CONFIG)
    version = tmp_path / "v"
    summary = publish(plan, version)
    assert sorted(p.name for p in version.iterdir()) == sorted(DatasetFiles.names())
    assert summary["format"] == FORMAT
    assert summary["rows"] == 300 and sum(summary["splits"].values()) == 300
    assert list(summary["splits"]) == ["train", "validation", "test"]
    assert summary["quarantined_by_reason"] == {"bad date": 1}
    assert summary["sources"] == {"a.csv": 300}
    assert summary["transliterator"]["name"] == "anyascii"

    heads = read_headlines(version)
    assert isinstance(heads, pl.LazyFrame)
    assert heads.collect().equals(plan.headlines)
    assert heads.collect_schema() == pl.Schema(HEADLINES_SCHEMA)
    assert read_quarantine(version).collect_schema() == pl.Schema(QUARANTINE_SCHEMA)
    everything = read_texts(version)
    assert everything == read_texts(version, "all") == [f"headline {i}" for i in range(300)]
    parts = {s: read_texts(version, s) for s in ("train", "validation", "test")}
    assert {s: len(t) for s, t in parts.items()} == summary["splits"]
    assert sorted(sum(parts.values(), [])) == sorted(everything)


def test_read_texts_rejects_unknown_split(tmp_path: Path, csv_file) -> None:
    plan = plan_ingest(None, [csv_file(tmp_path, "a.csv", b"20030219,a\n")], CONFIG)
    publish(plan, tmp_path / "v")
    with pytest.raises(ValueError, match="'valid'"):
        read_texts(tmp_path / "v", "valid")


def test_read_from_a_directory_that_is_not_a_version(tmp_path: Path, csv_file) -> None:
    with pytest.raises(FileNotFoundError, match=DatasetFiles.at(tmp_path).headlines.name):
        read_headlines(tmp_path)
    with pytest.raises(FileNotFoundError):
        plan_ingest(tmp_path, [csv_file(tmp_path, "a.csv", b"20030219,a\n")], CONFIG)


def test_write_dataset_checks_its_inputs(tmp_path: Path) -> None:
    frame = pl.DataFrame({"publish_date": [dt.date(2003, 2, 19)], "headline": ["a"],
                          "split": ["train"], "source": ["s"], "row": [1]})
    with pytest.raises(NotADirectoryError):
        write_dataset(tmp_path / "absent", frame, None)
    with pytest.raises(ValueError, match="split"):
        write_dataset(tmp_path, frame.drop("split"), None)
    summary = write_dataset(tmp_path, frame.lazy(), None)  # lazy input, no quarantine
    assert summary["rows"] == 1 and summary["quarantined_by_reason"] == {}




def test_recent_days_parsing() -> None:
    assert recent_days("recent") == RECENT_DAYS == 30
    assert recent_days("recent:1") == 1 and recent_days("recent:365") == 365
    for other in (None, "all", "train", "validation", "test", "recently", "holdout"):
        assert recent_days(other) is None
    for bad in ("recent:", "recent:0", "recent:-3", "recent:1.5", "recent:abc", "recent: 7",
                "recent:7d", "recent:٣"):
        with pytest.raises(ValueError, match="DAYS") as error:
            recent_days(bad)
        assert repr(bad) in str(error.value) and "\n" not in str(error.value)
        with pytest.raises(ValueError):
            check_split(bad)
    assert check_split("recent:7") == "recent:7"
    with pytest.raises(ValueError, match="recent"):  # the message lists the views
        check_split("holdout")


def _dated_version(tmp_path: Path, csv_file, days: dict[str, int]) -> Path:
    """A version with `days[YYYYMMDD]` headlines on each date, returned as its directory."""
    body = b"".join(f"{day},{day} story {i}\n".encode()
                    for day, n in days.items() for i in range(n))
    plan = plan_ingest(None, [csv_file(tmp_path, "d.csv", body)], CONFIG)
    publish(plan, tmp_path / "v")
    return tmp_path / "v"


def test_recent_view_counts_back_from_the_newest_publish_date(tmp_path: Path,
                                                               csv_file) -> None:
    # Newest date 2003-03-31; a gap of days without news; a row exactly on each boundary.
    version = _dated_version(tmp_path, csv_file, {
        "20030301": 2, "20030302": 3, "20030331": 4, "20030325": 5, "20030226": 6})

    def dates(split: str) -> list[str]:
        return sorted({d.isoformat() for d in read_view(version, split)["publish_date"]})

    assert dates("recent:1") == ["2003-03-31"]
    assert dates("recent:7") == ["2003-03-25", "2003-03-31"]  # 25..31 is seven days
    assert dates("recent:6") == ["2003-03-31"]  # 26..31
    assert dates("recent:30") == dates("recent") == ["2003-03-02", "2003-03-25", "2003-03-31"]
    assert dates("recent:31") == ["2003-03-01", "2003-03-02", "2003-03-25", "2003-03-31"]
    assert len(read_view(version, "recent:10000000")) == 20  # longer than the data: all rows
    view = read_view(version, "recent:7")
    assert view.columns == ["publish_date", "headline", "split"] and view.height == 9
    assert read_texts(version, "recent:7") == view["headline"].to_list()


def test_read_texts_keeps_a_views_rows_of_the_newest_days(tmp_path: Path, csv_file) -> None:
    version = _dated_version(tmp_path, csv_file, {"20030301": 150, "20030330": 100,
                                                  "20030331": 120})
    whole = read_headlines(version).collect()
    for split in ("train", "validation", "test", None):
        rows = whole if split is None else whole.filter(pl.col("split") == split)
        # The window ends at the dataset's newest date, not the split's.
        newest = rows.filter(pl.col("publish_date") >= dt.date(2003, 3, 30))
        assert read_texts(version, split, days=2) == newest["headline"].to_list()
        assert read_texts(version, split, days=31) == rows["headline"].to_list()
    assert 0 < len(read_texts(version, "train", days=1)) < 120
    # with a recent view, the tighter window wins
    assert read_texts(version, "recent:2", days=1) == read_texts(version, "recent:1")


def test_recent_view_cuts_across_the_hash_splits(tmp_path: Path, csv_file) -> None:
    version = _dated_version(tmp_path, csv_file, {"20030219": 100, "20030220": 200})
    recent = read_view(version, "recent:1")
    assert recent.height == 200 and set(recent["publish_date"]) == {dt.date(2003, 2, 20)}
    whole = read_headlines(version).collect()
    for split in ("train", "validation", "test"):
        expected = whole.filter((pl.col("split") == split)
                                & (pl.col("publish_date") == dt.date(2003, 2, 20))).height
        assert (recent["split"] == split).sum() == expected
    assert (recent["split"] == "train").sum() > 150  # ~90% of recent rows are training rows
