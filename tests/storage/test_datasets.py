"""Dataset version files and whole-file ingestion: CSVs in, one merged dataset out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from charlm.config import IngestConfig
from charlm.ingest import CLEAN_SCHEMA, QUARANTINE_SCHEMA, clean_text
from storage.datasets import (
    FORMAT,
    HEADLINES_FILE,
    QUARANTINE_FILE,
    IngestPlan,
    ingest_files,
    read_headlines,
    read_quarantine,
    read_texts,
    write_dataset,
)
from storage.sources import IngestError

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
CONFIG = IngestConfig()
HEADER = b"publish_date,headline_text\n"


def csv_file(directory: Path, name: str, body: bytes, header: bytes = HEADER) -> Path:
    path = directory / name
    path.write_bytes(header + body)
    return path


def publish(plan: IngestPlan, directory: Path) -> dict:
    directory.mkdir()
    return write_dataset(directory, plan.headlines, plan.quarantine)


def test_every_bad_row_lands_in_quarantine(tmp_path: Path) -> None:
    body = (
        b"20030219,good one\n"
        b"20030219,too,many\n"  # ragged
        b"20030219\n"  # ragged
        b'20030219,"never closed\n'  # bad quoting; reading resumes on the next line
        b"20030219,caf\xe9\n"  # Latin-1: undecodable
        b"20030219,nul\0byte\n"
        b"20030219,\xe5\x8c\x97\xe4\xba\xac\n"  # only non-ASCII: transliterated to BeiJing
        b"20030219,\xe2\x80\x8b\n"  # zero-width space only: empty after cleaning
        b"2003-02-19,dashes\n"
        b"20030230,no such day\n"
        b"20030219," + b"x" * 100_000 + b"\n"
        b"20030220,good two\n"
    )
    plan = ingest_files(None, [csv_file(tmp_path, "bad.csv", body)], CONFIG)
    assert plan.headlines["headline"].to_list() == ["good one", "BeiJing", "good two"]
    assert plan.quarantine.select("row", "reason").rows() == [
        (2, "ragged row"), (3, "ragged row"), (4, "bad quoting"), (5, "undecodable bytes"),
        (6, "NUL bytes"), (8, "empty after cleaning"), (9, "bad date"), (10, "bad date"),
        (11, "longer than max_length"),
    ]
    assert plan.quarantined == {
        "undecodable bytes": 1, "NUL bytes": 1, "ragged row": 2, "bad quoting": 1,
        "bad date": 2, "empty after cleaning": 1, "longer than max_length": 1,
    }
    assert (plan.new_rows, plan.duplicates, plan.rows) == (3, 0, 3)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda d: d / "missing.csv", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: csv_file(d, "empty.csv", b"", header=b""), "empty file"),
        (lambda d: csv_file(d, "cols.csv", b"1,2\n", header=b"a,b\n"), "missing column"),
    ],
)
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, make, needle: str) -> None:
    good = csv_file(tmp_path, "good.csv", b"20030219,a\n")
    bad = make(tmp_path)
    with pytest.raises(IngestError, match=needle) as info:
        ingest_files(None, [good, bad], CONFIG)
    assert str(bad) in str(info.value)


def test_no_files_is_an_error() -> None:
    with pytest.raises(IngestError, match="no CSV files"):
        ingest_files(None, [], CONFIG)


def test_header_only_file_adds_nothing(tmp_path: Path) -> None:
    plan = ingest_files(None, [csv_file(tmp_path, "h.csv", b"")], CONFIG)
    assert (plan.new_rows, plan.duplicates, plan.rows, plan.changed) == (0, 0, 0, False)


def test_incremental_ingest_and_reingest(tmp_path: Path) -> None:
    first = csv_file(tmp_path, "one.csv", b"20030219,a\n20030219,b\n20030219,a\n")
    second = csv_file(tmp_path, "two.csv", b"20030219,b\n20030220,b\n20030221,Ab \xc3\xa9\n")
    plan1 = ingest_files(None, [first], CONFIG)
    assert (plan1.new_rows, plan1.duplicates) == (2, 1)
    v1 = tmp_path / "v1"
    publish(plan1, v1)

    plan2 = ingest_files(v1, [second], CONFIG)
    assert (plan2.new_rows, plan2.duplicates, plan2.rows) == (2, 1, 4)
    assert plan2.headlines.select("headline", "source", "row").rows() == [
        ("a", "one.csv", 1), ("b", "one.csv", 2), ("b", "two.csv", 2), ("Ab e", "two.csv", 3)
    ]
    assert "2 new rows, 1 duplicates" in plan2.describe()
    v2 = tmp_path / "v2"
    publish(plan2, v2)

    for path in (first, second):
        again = ingest_files(v2, [path], CONFIG)
        assert (again.new_rows, again.changed, again.rows) == (0, False, 4)
    both = ingest_files(v2, [first, second], CONFIG)
    assert (both.new_rows, both.duplicates) == (0, 6)


def test_write_and_read_dataset(tmp_path: Path) -> None:
    body = b"".join(f"200302{10 + i % 18},headline {i}\n".encode() for i in range(300))
    plan = ingest_files(None, [csv_file(tmp_path, "a.csv", body + b"bad,x\n")], CONFIG)
    version = tmp_path / "v"
    summary = publish(plan, version)
    assert sorted(p.name for p in version.iterdir()) == [HEADLINES_FILE, QUARANTINE_FILE]
    assert summary["format"] == FORMAT
    assert summary["rows"] == 300 and sum(summary["splits"].values()) == 300
    assert list(summary["splits"]) == ["train", "validation", "test"]
    assert summary["quarantined"] == {"bad date": 1}
    assert summary["sources"] == {"a.csv": 300}
    assert summary["transliterator"]["name"] == "anyascii"

    heads = read_headlines(version)
    assert isinstance(heads, pl.LazyFrame)
    assert heads.collect().equals(plan.headlines)
    assert heads.collect_schema() == pl.Schema(CLEAN_SCHEMA)
    assert read_quarantine(version).collect_schema() == pl.Schema(QUARANTINE_SCHEMA)
    everything = read_texts(version)
    assert everything == read_texts(version, "all") == [f"headline {i}" for i in range(300)]
    parts = {s: read_texts(version, s) for s in ("train", "validation", "test")}
    assert {s: len(t) for s, t in parts.items()} == summary["splits"]
    assert sorted(sum(parts.values(), [])) == sorted(everything)


def test_read_texts_rejects_unknown_split(tmp_path: Path) -> None:
    plan = ingest_files(None, [csv_file(tmp_path, "a.csv", b"20030219,a\n")], CONFIG)
    publish(plan, tmp_path / "v")
    with pytest.raises(ValueError, match="'valid'"):
        read_texts(tmp_path / "v", "valid")


def test_read_from_a_directory_that_is_not_a_version(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=HEADLINES_FILE):
        read_headlines(tmp_path)
    with pytest.raises(FileNotFoundError):
        ingest_files(tmp_path, [csv_file(tmp_path, "a.csv", b"20030219,a\n")], CONFIG)


def test_write_dataset_checks_its_inputs(tmp_path: Path) -> None:
    frame = pl.DataFrame({"publish_date": [dt.date(2003, 2, 19)], "headline": ["a"],
                          "split": ["train"], "source": ["s"], "row": [1]})
    with pytest.raises(NotADirectoryError):
        write_dataset(tmp_path / "absent", frame, None)
    with pytest.raises(ValueError, match="split"):
        write_dataset(tmp_path, frame.drop("split"), None)
    summary = write_dataset(tmp_path, frame.lazy(), None)  # lazy input, no quarantine
    assert summary["rows"] == 1 and summary["quarantined"] == {}


def test_real_files_incrementally(tmp_path: Path) -> None:
    early, october = SHARED / "abcnews-2003-02-to-09.csv", SHARED / "abcnews-2003-10.csv"
    if not (early.exists() and october.exists()):
        pytest.skip(f"shared data not present in {SHARED}")
    plan1 = ingest_files(None, [early], CONFIG)
    assert plan1.new_rows + plan1.duplicates + sum(plan1.quarantined.values()) == 45_914
    publish(plan1, tmp_path / "v1")

    plan2 = ingest_files(tmp_path / "v1", [october], CONFIG)
    # Independent count of the duplicates: (date, cleaned text) already seen.
    seen = {(d.strftime("%Y%m%d"), h) for d, h in plan1.headlines.select(
        "publish_date", "headline").iter_rows()}
    duplicates = 0
    for date, text in pl.read_csv(october, infer_schema=False).iter_rows():
        key = (date, clean_text(text))
        duplicates += key in seen
        seen.add(key)
    assert plan2.quarantined == {}
    assert plan2.duplicates == duplicates
    assert plan2.new_rows == 6_599 - duplicates
    assert plan2.rows == plan1.rows + plan2.new_rows
    publish(plan2, tmp_path / "v2")

    again = ingest_files(tmp_path / "v2", [october], CONFIG)
    assert (again.new_rows, again.duplicates) == (0, 6_599)
