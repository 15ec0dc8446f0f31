"""Reading headline CSVs: every kind of bad input gives a one-line IngestError or a reason."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlm.config import IngestConfig
from ingestion.cleaning import RAW_SCHEMA, clean
from ingestion.csv_reader import _parse_fast, _parse_tolerant, parse_headlines, scan_headlines
from ingestion.reasons import IngestError

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
HEADER = b"publish_date,headline_text\n"


def write(tmp_path: Path, data: bytes, name: str = "in.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def rows(path: Path) -> list[tuple]:
    frame = scan_headlines(path).collect()
    return frame.select("row", "publish_date", "headline_text", "reason").rows()


def error(path: Path) -> str:
    with pytest.raises(IngestError) as info:
        scan_headlines(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# -- whole-file errors ---------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    assert "no such file" in error(tmp_path / "nope.csv")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in error(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    assert "empty file (0 bytes)" in error(write(tmp_path, b""))


def test_only_blank_lines(tmp_path: Path) -> None:
    assert "no header row" in error(write(tmp_path, b"\n\r\n\n"))


def test_wrong_columns_names_file_and_columns_found(tmp_path: Path) -> None:
    message = error(write(tmp_path, b"date,title\n20030219,x\n"))
    assert "missing column(s) publish_date, headline_text" in message
    assert "'date', 'title'" in message


def test_one_missing_column(tmp_path: Path) -> None:
    message = error(write(tmp_path, b"publish_date,text\n20030219,x\n"))
    assert "missing column(s) headline_text;" in message


def test_garbage_header_stays_one_line(tmp_path: Path) -> None:
    message = error(write(tmp_path, b'"a\nb",' + b"x" * 5000 + b"\n1,2\n"))
    assert len(message) < 500


def test_duplicate_column(tmp_path: Path) -> None:
    message = error(write(tmp_path, b"publish_date,headline_text,headline_text\n1,2,3\n"))
    assert "headline_text appears 2 times" in message


def test_utf16_file(tmp_path: Path) -> None:
    data = "publish_date,headline_text\n20030219,x\n".encode("utf-16")
    assert "UTF-16" in error(write(tmp_path, data))


def test_nul_in_header(tmp_path: Path) -> None:
    assert "NUL" in error(write(tmp_path, b"publish_date,headline_text\0\n1,2\n"))


def test_latin1_header(tmp_path: Path) -> None:
    assert "not valid UTF-8" in error(write(tmp_path, b"publish_date,headline_text,\xe9\n1,2,3\n"))


def test_cr_only_line_ends(tmp_path: Path) -> None:
    assert "CR-only" in error(write(tmp_path, b"publish_date,headline_text\r20030219,x\r"))


def test_error_is_a_value_error() -> None:
    assert issubclass(IngestError, ValueError)


# -- valid files ---------------------------------------------------------------------------


def test_header_only_is_empty(tmp_path: Path) -> None:
    for data in (b"publish_date,headline_text", HEADER, b"publish_date,headline_text\r\n\r\n"):
        frame = scan_headlines(write(tmp_path, data)).collect()
        assert frame.height == 0
        assert frame.schema == pl.Schema(RAW_SCHEMA)


def test_schema_source_and_rows(tmp_path: Path) -> None:
    frame = scan_headlines(write(tmp_path, HEADER + b"20030219,a\n20030220,b\n", "x.csv"))
    assert isinstance(frame, pl.LazyFrame)
    out = frame.collect()
    assert out.schema == pl.Schema(RAW_SCHEMA)
    assert out["source"].to_list() == ["x.csv", "x.csv"]
    assert out["row"].to_list() == [1, 2]


def test_columns_by_name_extra_ignored(tmp_path: Path) -> None:
    data = b"id, headline_text ,extra,publish_date\n7,hello,zz,20030219\n"
    assert rows(write(tmp_path, data)) == [(1, "20030219", "hello", None)]


def test_bom_is_stripped(tmp_path: Path) -> None:
    assert rows(write(tmp_path, b"\xef\xbb\xbf" + HEADER + b"20030219,a\n")) == [
        (1, "20030219", "a", None)
    ]


def test_crlf_and_quoting(tmp_path: Path) -> None:
    data = (
        b"publish_date,headline_text\r\n"
        b'20030219,"one, two"\r\n'
        b'20030220,"say ""hi"""\r\n'
        b'20030221,"line one\r\nline two"\r\n'
        b'20030222,"a\nb, ""c"""\r\n'
        b"\r\n"  # a blank line: skipped, not counted
        b"20030223,plain\r\n"
        b'"20030224",""\r\n'
        b"20030225,no newline at end"
    )
    assert rows(write(tmp_path, data)) == [
        (1, "20030219", "one, two", None),
        (2, "20030220", 'say "hi"', None),
        (3, "20030221", "line one\r\nline two", None),
        (4, "20030222", 'a\nb, "c"', None),
        (5, "20030223", "plain", None),
        (6, "20030224", "", None),
        (7, "20030225", "no newline at end", None),
    ]


def test_lf_and_crlf_files_parse_alike(tmp_path: Path) -> None:
    lf = HEADER + b'20030219,"a, b"\n20030220,c\n'
    crlf = lf.replace(b"\n", b"\r\n")
    assert rows(write(tmp_path, lf, "lf.csv")) == rows(write(tmp_path, crlf, "crlf.csv"))


# -- bad rows are quarantined, not fatal -----------------------------------------------


def test_ragged_rows(tmp_path: Path) -> None:
    data = HEADER + b"20030219,ok\n20030220,too,many\n20030221\n20030222,fine\n"
    frame = scan_headlines(write(tmp_path, data)).collect()
    assert frame.select("row", "reason", "raw").rows() == [
        (1, None, None),
        (2, "ragged row", "20030220,too,many"),
        (3, "ragged row", "20030221"),
        (4, None, None),
    ]
    assert frame["headline_text"].to_list() == ["ok", None, None, "fine"]


def test_unclosed_quote_costs_one_row(tmp_path: Path) -> None:
    data = HEADER + b'20030219,ok\n20030220,"never closed\n20030221,next\n20030222,last\n'
    assert rows(write(tmp_path, data)) == [
        (1, "20030219", "ok", None),
        (2, None, None, "bad quoting"),
        (3, "20030221", "next", None),
        (4, "20030222", "last", None),
    ]


@pytest.mark.parametrize("body,reason,raw", [
    (b'20030219,"quoted"tail\r\n20030220,b\r\n', "bad quoting", '20030219,"quoted"tail'),
    (b"20030219,a\0b\n20030220,fine\n", "NUL bytes", "20030219,a\0b"),
], ids=["text after closing quote", "NUL bytes"])
def test_bad_first_row_is_reported_with_its_raw_text(tmp_path: Path, body: bytes, reason: str,
                                                     raw: str) -> None:
    frame = scan_headlines(write(tmp_path, HEADER + body)).collect()
    assert frame.select("row", "reason", "raw").rows() == [(1, reason, raw), (2, None, None)]


def test_quote_inside_unquoted_field_is_literal(tmp_path: Path) -> None:
    data = HEADER + b'20030219,man says "hi\n20030220,b\n'
    assert rows(write(tmp_path, data)) == [
        (1, "20030219", 'man says "hi', None),
        (2, "20030220", "b", None),
    ]


def test_latin1_bytes(tmp_path: Path) -> None:
    data = HEADER + b"20030219,caf\xe9 society\n20030220,caf\xc3\xa9\n"
    frame = scan_headlines(write(tmp_path, data)).collect()
    assert frame.select("row", "reason", "raw", "headline_text").rows() == [
        (1, "undecodable bytes", "20030219,caf\\xe9 society", None),
        (2, None, None, "café"),
    ]


def test_100k_character_line(tmp_path: Path) -> None:
    data = HEADER + b"20030219," + b"word " * 20_000 + b"\n20030220,short\n"
    frame = scan_headlines(write(tmp_path, data)).collect()
    assert frame["headline_text"].str.len_chars().to_list() == [100_000, 5]


def test_bad_dates_are_left_to_clean(tmp_path: Path) -> None:
    data = HEADER + b"2003-02-19,a\n2003021,b\n"
    assert [r[1] for r in rows(write(tmp_path, data))] == ["2003-02-19", "2003021"]


# -- the fast path and the tolerant tokenizer agree -----------------------------------------

_field = st.text(alphabet=st.sampled_from(list('ab ,"\n\r\t\0é中')), max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_field, min_size=1, max_size=4), max_size=8), st.booleans())
def test_paths_agree_on_csv_writer_output(records: list[list[str]], crlf: bool) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["publish_date", "headline_text"])
    writer.writerows(records)
    data = out.getvalue().encode("utf-8")
    fast = _parse_fast(data, "x")
    assert fast is not None  # csv.writer output is RFC 4180-clean
    assert fast.equals(_parse_tolerant(data, "x"))


_noise = st.binary(max_size=60) | st.lists(
    st.sampled_from([b'"', b",", b"\n", b"\r\n", b"\r", b"a", b"1", b"\0", b"\xe9", b'""']),
    max_size=30,
).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(_noise)
def test_paths_agree_whenever_fast_path_accepts(body: bytes) -> None:
    data = HEADER + body
    fast = _parse_fast(data, "x")
    if fast is not None:
        assert fast.equals(_parse_tolerant(data, "x"))


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.booleans(), _noise)
def test_arbitrary_bytes_give_valid_rows_or_ingest_error(
    tmp_path: Path, with_header: bool, body: bytes
) -> None:
    path = write(tmp_path, (HEADER if with_header else b"") + body)
    config = IngestConfig(max_headline_length=20)
    try:
        good, bad = clean(scan_headlines(path), config)
        good_rows, bad_rows = pl.collect_all([good, bad])
    except IngestError as e:
        assert "\n" not in str(e)
        return
    for text in good_rows["headline"].to_list():
        assert 0 < len(text) <= 20
        assert all(32 <= ord(c) <= 126 for c in text)
    assert good_rows["publish_date"].null_count() == 0
    assert set(good_rows["split"].to_list()) <= {"train", "validation", "test"}
    assert bad_rows["reason"].null_count() == 0
    # every data row is accounted for exactly once
    raw = parse_headlines(path.read_bytes(), "in.csv")
    assert sorted(good_rows["row"].to_list() + bad_rows["row"].to_list()) == raw["row"].to_list()


# -- the real data ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,count", [("abcnews-2003-02-to-09.csv", 45_914), ("abcnews-2003-10.csv", 6_599)]
)
def test_real_files(name: str, count: int) -> None:
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    frame = scan_headlines(path).collect()
    assert frame.height == count
    assert frame["reason"].null_count() == count
    assert not frame["headline_text"].str.contains("\r").any()
    expected = pl.read_csv(path, infer_schema=False)
    assert frame["headline_text"].to_list() == expected["headline_text"].to_list()
