"""`charlm ingest`, `ingest-feed` and `drift`, in-process: new rows, feeds, drift on ingest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_runtime_error, assert_usage_error, last_line, run, write_csv
from feedserver import Reply, conditional, rss, rss_item

from storage import Store
from storage.datasets import read_texts

SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
EARLY, OCTOBER = SHARED / "abcnews-2003-02-to-09.csv", SHARED / "abcnews-2003-10.csv"


def test_ingest_prints_dataset_id_and_reports_no_new_rows_on_repeat(capsys, tmp_path):
    csv = write_csv(tmp_path / "a.csv", 200, seed=2)
    code, out, err = run(capsys, tmp_path / "s", "ingest", str(csv))
    assert code == 0
    dataset = last_line(out)
    assert (tmp_path / "s" / "datasets" / dataset / "manifest.json").exists()
    code, out, err = run(capsys, tmp_path / "s", "ingest", str(csv))
    assert code == 0 and last_line(out) == dataset
    assert "0 new rows" in err


def test_ingest_bad_arguments(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "ingest")
    assert_usage_error(code, err, "csv")
    code, _, err = run(capsys, tmp_path, "ingest", "x.csv", "--max-length", "0")
    assert_usage_error(code, err, "--max-length", "0")
    code, _, err = run(capsys, tmp_path, "ingest", str(tmp_path / "missing.csv"))
    assert_runtime_error(code, err, "missing.csv")


def test_ingest_normalise_maps_headlines_to_the_abc_style(capsys, tmp_path):
    csv = tmp_path / "feedish.csv"
    csv.write_text("publish_date,headline_text\n20240501,PM's $1.5b plan 'on track'\n")
    code, out, _ = run(capsys, tmp_path / "s", "ingest", str(csv), "--normalise")
    assert code == 0
    assert read_texts(tmp_path / "s" / "datasets" / last_line(out)) == ["pms 15b plan on track"]


def test_ingest_feed_publishes_once_enough_items_wait(capsys, tmp_path, feed_server):
    url = feed_server.serve("/feed.xml", Reply(200, rss(
        [rss_item(f"CLI story {n}", guid=f"urn:cli:{n}") for n in range(5)])))
    code, out, err = run(capsys, tmp_path / "s", "ingest-feed", url, "--min-new", "6")
    assert code == 0 and out == ""  # 5 < 6: nothing published yet
    assert f"{url}: fetched 5, new 5" in err and "5 item(s) waiting" in err
    code, out, err = run(capsys, tmp_path / "s", "ingest-feed", url, "--max-wait-hours", "0")
    assert code == 0
    assert len(read_texts(tmp_path / "s" / "datasets" / last_line(out))) == 5
    assert "duplicates 5" in err


def test_ingest_feed_errors(capsys, tmp_path, feed_server):
    good = feed_server.serve("/ok.xml", conditional_feed())
    missing = feed_server.url("/missing.xml")
    code, out, err = run(capsys, tmp_path / "s", "ingest-feed", missing, good, "--min-new", "1")
    assert_runtime_error(code, err, "1 of 2 feed(s) failed", f"{missing}: HTTP 404")
    assert len(read_texts(tmp_path / "s" / "datasets" / last_line(out))) == 1  # still published
    code, _, err = run(capsys, tmp_path, "ingest-feed")
    assert_usage_error(code, err, "url")
    code, _, err = run(capsys, tmp_path, "ingest-feed", good, "--min-new", "0")
    assert_usage_error(code, err, "--min-new", "0")
    code, _, err = run(capsys, tmp_path, "ingest-feed", good, "--max-wait-hours", "-2")
    assert_usage_error(code, err, "--max-wait-hours", "-2")


def conditional_feed():
    return conditional(rss([rss_item("One story", guid="urn:one")]), etag='"1"')


def test_ingest_records_drift_then_drift_draws_the_trend(capsys, tmp_path, publish_model):
    store = tmp_path / "s"
    code, out, err = run(capsys, store, "ingest", str(write_csv(tmp_path / "a.csv", 300, 1)))
    assert code == 0 and "no champion model yet" in err
    first = last_line(out)
    champion = publish_model(str(store), first)
    code, out, err = run(capsys, store, "drift")
    assert_runtime_error(code, err, "no drift to show yet")
    code, out, err = run(capsys, store, "ingest", str(write_csv(tmp_path / "b.csv", 200, 2)))
    assert code == 0, err
    second = last_line(out)
    [line] = [x for x in err.splitlines() if x.startswith("drift:")]
    drift = Store(store).resolve("evaluations", "drift")
    summary = Store(store).manifest("evaluations", drift)["summary"]
    assert f"champion {champion} on the {summary['new_rows']} new headlines of dataset " \
           f"{second}" in line
    assert summary["new_rows"] == Store(store).manifest("datasets", second)["summary"][
        "new_rows"]
    code, out, err = run(capsys, store, "ingest", "--no-drift",
                         str(write_csv(tmp_path / "c.csv", 100, 3)))
    assert code == 0 and "drift" not in err
    assert Store(store).resolve("evaluations", "drift") == drift

    code, out, err = run(capsys, store, "drift")
    assert code == 0, err
    png = Path(last_line(out))
    assert png.name == "trend.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert f"| new batch | `{second}` | `{champion}` | {summary['new_rows']} |" in out
    code, out, _ = run(capsys, store, "versions", "evaluations")
    assert f"drift: {summary['new_rows']} new headlines" in out
    assert "drift trend: 1 points" in out


def test_ingest_succeeds_when_drift_cannot_be_scored(capsys, tmp_path, publish_model):
    store = tmp_path / "s"
    code, out, _ = run(capsys, store, "ingest", str(write_csv(tmp_path / "a.csv", 100, 1)))
    champion = publish_model(str(store), last_line(out))
    (Store(store).path("models", champion) / "config.json").chmod(0o644)
    (Store(store).path("models", champion, verify=False) / "config.json").write_text("{}")
    code, out, err = run(capsys, store, "ingest", str(write_csv(tmp_path / "b.csv", 100, 2)))
    assert code == 0
    assert Store(store).resolve("datasets", "latest") == last_line(out)
    [line] = [x for x in err.splitlines() if "drift" in x]
    assert line.startswith(f"charlm: drift not recorded for dataset {last_line(out)}: ")
    assert "config.json" in line


def test_must_show_real_files(capsys, tmp_path, publish_model):
    """The issue's must-show with a tiny untrained champion: October scored without being
    ingested, then its ingestion records the champion's bits/char on its 6,599 new rows."""
    if not (EARLY.exists() and OCTOBER.exists()):
        pytest.skip(f"shared data not present in {SHARED}")
    store = tmp_path / "s"
    code, out, _ = run(capsys, store, "ingest", str(EARLY))
    assert code == 0
    publish_model(str(store), last_line(out))
    code, out, err = run(capsys, store, "evaluate", "champion", "--csv", str(OCTOBER),
                         "--samples", "0")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["headlines"] == 6599 and scored["quarantined_rows"] == 0
    assert len(Store(store).versions("datasets")) == 1
    code, out, err = run(capsys, store, "ingest", str(OCTOBER))
    assert code == 0, err
    drift = Store(store).manifest("evaluations", "drift")["summary"]
    assert drift["new_rows"] == 6599 and drift["dataset"] == last_line(out)
    # the same rows, the same model: the drift figure is the --csv figure
    assert drift["bits_per_char"] == pytest.approx(scored["bits_per_char"])
