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
    read_headlines,
    read_quarantine,
    read_texts,
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


