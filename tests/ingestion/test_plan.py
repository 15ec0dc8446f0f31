"""Planning dataset versions from CSVs: every bad row quarantined, merges, re-ingestion."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from charlm.config import IngestConfig
from ingestion.cleaning import clean_text
from ingestion.plan import IngestPlan, added_rows, plan_ingest, write_version
from ingestion.reasons import IngestError
from storage.datasets import read_headlines

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
CONFIG = IngestConfig()


def publish(plan: IngestPlan, directory: Path) -> dict:
    directory.mkdir()
    return write_version(plan, directory)


def test_every_bad_row_lands_in_quarantine(tmp_path: Path, csv_file) -> None:
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
    plan = plan_ingest(None, [csv_file(tmp_path, "bad.csv", body)], CONFIG)
    assert plan.headlines["headline"].to_list() == ["good one", "BeiJing", "good two"]
    assert plan.quarantine.select("row", "reason").rows() == [
        (2, "ragged row"), (3, "ragged row"), (4, "bad quoting"), (5, "undecodable bytes"),
        (6, "NUL bytes"), (8, "empty after cleaning"), (9, "bad date"), (10, "bad date"),
        (11, "longer than max_headline_length"),
    ]
    assert plan.quarantined_by_reason == {
        "undecodable bytes": 1, "NUL bytes": 1, "ragged row": 2, "bad quoting": 1,
        "bad date": 2, "empty after cleaning": 1, "longer than max_headline_length": 1,
    }
    assert (plan.new_rows, plan.duplicates, plan.rows) == (3, 0, 3)


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda d, write: d / "missing.csv", "no such file"),
        (lambda d, write: d, "is a directory"),
        (lambda d, write: write(d, "empty.csv", b"", header=b""), "empty file"),
        (lambda d, write: write(d, "cols.csv", b"1,2\n", header=b"a,b\n"), "missing column"),
    ],
)
def test_unreadable_files_raise_naming_the_file(tmp_path: Path, make, needle: str,
                                                csv_file) -> None:
    good = csv_file(tmp_path, "good.csv", b"20030219,a\n")
    bad = make(tmp_path, csv_file)
    with pytest.raises(IngestError, match=needle) as info:
        plan_ingest(None, [good, bad], CONFIG)
    assert str(bad) in str(info.value)


def test_no_files_is_an_error() -> None:
    with pytest.raises(IngestError, match="no CSV files"):
        plan_ingest(None, [], CONFIG)


def test_header_only_file_adds_nothing(tmp_path: Path, csv_file) -> None:
    plan = plan_ingest(None, [csv_file(tmp_path, "h.csv", b"")], CONFIG)
    assert (plan.new_rows, plan.duplicates, plan.rows, plan.changed) == (0, 0, 0, False)


def test_incremental_ingest_and_reingest(tmp_path: Path, csv_file) -> None:
    first = csv_file(tmp_path, "one.csv", b"20030219,a\n20030219,b\n20030219,a\n")
    second = csv_file(tmp_path, "two.csv", b"20030219,b\n20030220,b\n20030221,Ab \xc3\xa9\n")
    plan1 = plan_ingest(None, [first], CONFIG)
    assert (plan1.new_rows, plan1.duplicates) == (2, 1)
    v1 = tmp_path / "v1"
    publish(plan1, v1)

    plan2 = plan_ingest(v1, [second], CONFIG)
    assert (plan2.new_rows, plan2.duplicates, plan2.rows) == (2, 1, 4)
    assert plan2.headlines.select("headline", "source", "row").rows() == [
        ("a", "one.csv", 1), ("b", "one.csv", 2), ("b", "two.csv", 2), ("Ab e", "two.csv", 3)
    ]
    assert "2 new rows, 1 duplicates" in plan2.describe()
    v2 = tmp_path / "v2"
    publish(plan2, v2)

    for path in (first, second):
        again = plan_ingest(v2, [path], CONFIG)
        assert (again.new_rows, again.changed, again.rows) == (0, False, 4)
    both = plan_ingest(v2, [first, second], CONFIG)
    assert (both.new_rows, both.duplicates) == (0, 6)


def test_real_files_incrementally(tmp_path: Path) -> None:
    early, october = SHARED / "abcnews-2003-02-to-09.csv", SHARED / "abcnews-2003-10.csv"
    if not (early.exists() and october.exists()):
        pytest.skip(f"shared data not present in {SHARED}")
    plan1 = plan_ingest(None, [early], CONFIG)
    assert plan1.new_rows + plan1.duplicates + plan1.quarantined_rows == 45_914
    publish(plan1, tmp_path / "v1")

    plan2 = plan_ingest(tmp_path / "v1", [october], CONFIG)
    # Independent count of the duplicates: (date, cleaned text) already seen.
    seen = {(d.strftime("%Y%m%d"), h) for d, h in plan1.headlines.select(
        "publish_date", "headline").iter_rows()}
    duplicates = 0
    for date, text in pl.read_csv(october, infer_schema=False).iter_rows():
        key = (date, clean_text(text))
        duplicates += key in seen
        seen.add(key)
    assert plan2.quarantined_by_reason == {}
    assert plan2.duplicates == duplicates
    assert plan2.new_rows == 6_599 - duplicates
    assert plan2.rows == plan1.rows + plan2.new_rows
    publish(plan2, tmp_path / "v2")

    again = plan_ingest(tmp_path / "v2", [october], CONFIG)
    assert (again.new_rows, again.duplicates) == (0, 6_599)


def test_added_rows_are_what_a_version_added(tmp_path: Path, csv_file) -> None:
    first = csv_file(tmp_path, "one.csv", b"20030219,a\n20030219,b\n")
    # "a" again on the same date is a duplicate; "a" on a new date and "c" are new rows.
    second = csv_file(tmp_path, "two.csv", b"20030219,a\n20030220,a\n20030220,c\n")
    plan1 = plan_ingest(None, [first], CONFIG)
    publish(plan1, tmp_path / "v1")
    plan2 = plan_ingest(tmp_path / "v1", [second], CONFIG)
    publish(plan2, tmp_path / "v2")
    added = added_rows(read_headlines(tmp_path / "v1"), read_headlines(tmp_path / "v2"))
    rows = added.select("publish_date", "headline").collect().rows()
    assert [(d.isoformat(), h) for d, h in rows] == [("2003-02-20", "a"), ("2003-02-20", "c")]
    assert len(rows) == plan2.new_rows
    assert added_rows(None, read_headlines(tmp_path / "v1")).collect().height == 2
