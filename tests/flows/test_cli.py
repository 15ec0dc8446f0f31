"""The `charlm` command line: every command's success path and a bad-argument case for each.

Commands run in-process through `main(argv)` (a TensorFlow import per subprocess would
cost seconds each); one test runs the installed console script for real.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from feedserver import Reply, conditional, rss, rss_item

from charlm.demo_corpus import make_corpus
from charlm.vocab import ALPHABET
from cli.main import main
from storage import Store
from storage.datasets import read_texts

TINY = ["--cell", "gru", "--hidden", "8", "--depth", "1", "--embedding", "4",
        "--epochs", "1", "--max-minutes", "0.2", "--batch-size", "32"]


def run(capsys, store: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["--storage", str(store), *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def write_csv(path: Path, n: int, seed: int) -> Path:
    rows = make_corpus(n, np.random.default_rng(seed))
    pl.DataFrame(rows, schema=["publish_date", "headline_text"], orient="row").write_csv(path)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, str]:
    """A store with one dataset and one tiny model, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("cli")
    store = root / "store"
    csv = write_csv(root / "headlines.csv", 600, seed=1)
    assert main(["--storage", str(store), "ingest", str(csv)]) == 0
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["--storage", str(store), "train", *TINY]) == 0
    return {"store": str(store), "root": str(root), "printed": printed.getvalue()}


def assert_usage_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def assert_runtime_error(code: int, err: str, *needles: str) -> None:
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.startswith("charlm: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


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


def test_train_prints_model_id_and_first_model_becomes_champion(trained, capsys):
    store = Store(trained["store"])
    model_id = last_line(trained["printed"])  # what `charlm train` printed
    assert [m["id"] for m in store.versions("models")] == [model_id]
    assert store.resolve("models", "champion") == model_id
    code, out, _ = run(capsys, Path(trained["store"]), "versions", "models")
    assert code == 0
    [line] = [line for line in out.splitlines() if line.split()[1] == model_id]
    assert "champion" in line and "latest" in line
    [change] = store.alias_history("models", "champion")
    assert change["id"] == model_id and change["reason"].startswith("first model")
    assert f"alias champion -> {model_id}" in out  # the history, shown by `versions`


def test_train_bad_arguments(capsys, tmp_path, trained):
    code, _, err = run(capsys, tmp_path, "train", "--hidden", "0")
    assert_usage_error(code, err, "hidden", "0")
    code, _, err = run(capsys, tmp_path, "train", "--cell", "transformer")
    assert_usage_error(code, err, "transformer")
    code, _, err = run(capsys, tmp_path, "train", "--max-minutes", "-1")
    assert_usage_error(code, err, "max_minutes")
    for bad in ("0", "two"):
        code, _, err = run(capsys, tmp_path, "train", "--devices", bad)
        assert_usage_error(code, err, "devices", bad)
    code, _, err = run(capsys, Path(trained["store"]), "train", "--dataset", "nosuchdataset",
                       *TINY)
    assert_runtime_error(code, err, "nosuchdataset")


def test_evaluate_prints_metrics_json(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "evaluate", "champion", "--split", "test",
                       "--samples", "50")
    assert code == 0
    metrics = json.loads(out)
    assert 0 < metrics["bits_per_char"] < 8
    assert metrics["perplexity"] == pytest.approx(2 ** metrics["bits_per_char"])
    assert metrics["split"] == "test"
    test_rows = read_texts(next((store / "datasets").glob("2*")), "test")
    assert metrics["headlines"] == len(test_rows)
    assert metrics["generated_headlines"] == 50
    for key in ("novelty", "word_validity", "distinct_1", "distinct_2", "duplicate_rate"):
        assert 0 <= metrics[key] <= 1 or metrics[key] is None, key
    evaluation = store / "evaluations" / metrics_evaluation_id(store)
    assert (evaluation / "report.md").read_text().count("|") > 10
    assert (evaluation / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def metrics_evaluation_id(store: Path) -> str:
    return sorted(p.name for p in (store / "evaluations").glob("2*"))[-1]


def test_evaluate_bad_arguments(trained, capsys):
    store = Path(trained["store"])
    code, _, err = run(capsys, store, "evaluate", "latest", "--split", "holdout")
    assert_usage_error(code, err, "holdout")
    code, _, err = run(capsys, store, "evaluate", "nosuchmodel")
    assert_runtime_error(code, err, "nosuchmodel")


def test_generate_writes_n_headlines_and_is_reproducible(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "7", "--seed", "3",
                       "--max-length", "30")
    assert code == 0
    first = Path(last_line(out)).read_text().splitlines()
    assert len(first) == 7
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "7", "--seed", "3",
                       "--max-length", "30")
    assert Path(last_line(out)).read_text().splitlines() == first
    code, out, _ = run(capsys, store, "generate", "latest", "-n", "2", "--prefix", "police ",
                       "--max-length", "10")
    assert all(line.startswith("police ") for line in Path(last_line(out)).read_text()
               .splitlines())


def test_generate_bad_arguments(trained, capsys):
    store = Path(trained["store"])
    code, _, err = run(capsys, store, "generate", "latest", "-n", "0")
    assert_usage_error(code, err, "-n", "0")
    code, _, err = run(capsys, store, "generate", "latest", "--top-p", "1.5")
    assert_usage_error(code, err, "top_p", "1.5")
    code, _, err = run(capsys, store, "generate", "latest", "--prefix", "caf\u00e9")
    assert_runtime_error(code, err, "\u00e9")


def test_versions_lists_every_kind(trained, capsys):
    code, out, _ = run(capsys, Path(trained["store"]), "versions")
    assert code == 0
    kinds = {line.split()[0] for line in out.strip().splitlines()}
    assert {"datasets", "models"} <= kinds
    code, _, err = run(capsys, Path(trained["store"]), "versions", "widgets")
    assert_usage_error(code, err, "widgets")


def test_train_reaches_the_champion_through_the_test_split_decision(capsys, tmp_path):
    store_dir = tmp_path / "s"
    csv = write_csv(tmp_path / "a.csv", 400, seed=6)
    assert main(["--storage", str(store_dir), "ingest", str(csv)]) == 0
    code, out, err = run(capsys, store_dir, "train", *TINY)
    assert code == 0 and "promoted to champion" in err
    first = last_line(out)
    code, out, err = run(capsys, store_dir, "train", *TINY, "--seed", "1")
    assert code == 0
    second = last_line(out)
    assert f"vs champion {first}" in err
    store = Store(store_dir)
    # Both were just scored on the same test split; the better one holds the title.
    scores = {m["summary"]["model"]: m["summary"]["bits_per_char"]
              for m in store.versions("evaluations")[-2:]}
    assert set(scores) == {first, second}
    better = second if scores[second] < scores[first] else first
    assert store.resolve("models", "champion") == better
    assert ("promoted to champion" in err) == (better == second)

    # By hand, with the reason recorded and shown.
    other = first if better == second else second
    code, out, _ = run(capsys, store_dir, "promote", other[:15], "--reason", "nicer samples")
    assert code == 0 and last_line(out) == other
    assert store.resolve("models", "champion") == other
    assert store.alias_history("models", "champion")[-1]["reason"] == "by hand: nicer samples"
    code, out, _ = run(capsys, store_dir, "versions", "models")
    assert f"alias champion -> {other}" in out and "by hand: nicer samples" in out


def test_promote_bad_arguments(capsys, tmp_path, trained):
    code, _, err = run(capsys, tmp_path, "promote", "latest")
    assert_usage_error(code, err, "--reason")
    code, _, err = run(capsys, tmp_path, "promote", "latest", "--reason", "  ")
    assert_usage_error(code, err, "--reason")
    code, _, err = run(capsys, Path(trained["store"]), "promote", "nosuchmodel", "--reason",
                       "x")
    assert_runtime_error(code, err, "nosuchmodel")


def test_every_option_says_its_default():
    from cli.parser import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for name, command in [("charlm", parser), *commands.items()]:
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)
            shown = command.format_help()
            if action.default not in (None, False, []):
                assert f"default: {action.default}" in " ".join(shown.split()), (
                    name, action.option_strings)


def test_verify_passes_then_reports_a_corrupted_file(capsys, tmp_path):
    store = tmp_path / "s"
    csv = write_csv(tmp_path / "a.csv", 100, seed=4)
    assert main(["--storage", str(store), "ingest", str(csv)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, store, "verify")
    assert code == 0 and last_line(out) == "ok"
    parquet = next((store / "datasets").glob("*/headlines.parquet"))
    os.chmod(parquet, 0o644)
    parquet.write_bytes(parquet.read_bytes()[:-10])
    code, out, err = run(capsys, store, "verify")
    assert_runtime_error(code, err, "problem")
    assert "headlines.parquet" in out
    code, _, err = run(capsys, store, "verify", "--everything")
    assert_usage_error(code, err, "--everything")


def test_gc_is_a_dry_run_unless_applied(capsys, tmp_path):
    store = tmp_path / "s"
    for seed in range(3):
        csv = write_csv(tmp_path / f"{seed}.csv", 50, seed=10 + seed)
        assert main(["--storage", str(store), "ingest", str(csv)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, store, "gc", "--keep", "1")
    assert code == 0
    assert len(list((store / "datasets").glob("2*"))) == 3  # dry run: nothing removed
    code, _, err = run(capsys, store, "gc", "--keep", "0")
    assert_usage_error(code, err, "--keep")


def write_article(directory: Path, cell: str, hidden: int, depth: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    (directory / "weights").mkdir(parents=True)
    (directory / "vocabulary.txt").write_bytes("[separator]".join(ALPHABET).encode())
    (directory / "inter_time_step_size.txt").write_text(str(hidden))
    (directory / "unit_type.txt").write_text(cell)
    (directory / "depth.txt").write_text(str(depth))
    names = ("wr", "br", "wu", "bu", "wa", "ba") if cell == "gru" else \
        ("wu", "bu", "wf", "bf", "wo", "bo", "wc", "bc")
    for level in range(depth):
        rows = hidden + (len(ALPHABET) if level == 0 else hidden)
        for name in names:
            shape = (rows, hidden) if name[0] == "w" else (1, hidden)
            np.save(directory / "weights" / f"{name}_{level}.npy", rng.normal(0, 0.3, shape))
    np.save(directory / "weights" / "wy.npy", rng.normal(0, 0.3, (hidden, len(ALPHABET))))
    np.save(directory / "weights" / "by.npy", rng.normal(0, 0.3, (1, len(ALPHABET))))


def test_import_article_publishes_a_usable_model(capsys, tmp_path):
    write_article(tmp_path / "article", "lstm", 8, 2, seed=5)
    store = tmp_path / "s"
    code, out, _ = run(capsys, store, "import-article", str(tmp_path / "article"))
    assert code == 0
    model_id = last_line(out)
    code, out, _ = run(capsys, store, "generate", model_id, "-n", "2", "--max-length", "5")
    assert code == 0 and len(Path(last_line(out)).read_text().splitlines()) == 2


def test_import_article_bad_arguments(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "import-article")
    assert_usage_error(code, err, "directory")
    code, _, err = run(capsys, tmp_path, "import-article", str(tmp_path / "nope"))
    assert_runtime_error(code, err, "nope")


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline(capsys, tmp_path):
    code, out, err = run(capsys, tmp_path / "s", "demo", "--headlines", "400",
                         "--max-minutes", "0.1", "-n", "3")
    assert code == 0
    assert len(Path(last_line(out)).read_text().splitlines()) == 3
    assert "bits/char" in err
    for kind in ("datasets", "models", "evaluations", "generations"):
        assert any((tmp_path / "s" / kind).glob("2*/manifest.json")), kind
    code, _, err = run(capsys, tmp_path / "s", "demo", "--headlines", "0")
    assert_usage_error(code, err, "--headlines")


def test_usage_errors_without_a_command(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert main(["fly"]) == 2
    assert "fly" in capsys.readouterr().err


def charlm(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The installed `charlm` program, as a user runs it (its own process)."""
    exe = Path(sys.executable).parent / "charlm"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=timeout,
                          env=env)


def test_console_script_reports_errors_in_one_line(tmp_path):
    proc = charlm("--storage", str(tmp_path), "evaluate", "nosuchmodel")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip().splitlines()[-1]]
    assert proc.stderr.startswith("charlm: error:")


def test_console_script_stderr_holds_only_charlms_own_lines(tmp_path):
    """TensorFlow's native start-up chatter never reaches the user, unless --debug."""
    from tasks.native_logs import is_native_log_line

    write_article(tmp_path / "article", "gru", 8, 1, seed=7)
    store = str(tmp_path / "s")
    imported = charlm("--storage", store, "import-article", str(tmp_path / "article"))
    assert imported.returncode == 0, imported.stderr
    model_id = imported.stdout.strip()
    assert imported.stderr.splitlines() == [
        f"imported the article's gru 8x1 model from {tmp_path / 'article'} as {model_id}"]
    generated = charlm("--storage", store, "generate", model_id, "-n", "2", "--seed", "1")
    assert generated.returncode == 0, generated.stderr
    lines = generated.stderr.splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == f"generating 2 headlines from model {model_id} in 1 shard(s)"
    assert lines[1].startswith("published generation ") and lines[1].endswith(
        f": 2 headlines from model {model_id}")
    assert lines[2].startswith("published generation ") and "2 headlines (" in lines[2]
    # The same command with --debug shows what the filter keeps away.
    debug = charlm("--storage", store, "--debug", "generate", model_id, "-n", "2")
    assert debug.returncode == 0, debug.stderr
    assert any(is_native_log_line(line.encode()) for line in debug.stderr.splitlines())


@pytest.mark.slow
def test_train_on_two_logical_devices_matches_one(tmp_path):
    """`--devices 2` on a CPU machine: two logical devices, each batch split in two, the
    same bits per char as one device (a fresh process each: devices are set at start-up)."""
    store = str(tmp_path / "s")
    csv = write_csv(tmp_path / "headlines.csv", 800, seed=3)
    assert charlm("--storage", store, "ingest", str(csv)).returncode == 0
    shape = ["--cell", "gru", "--hidden", "16", "--depth", "2", "--embedding", "8",
             "--dropout", "0", "--epochs", "2", "--batch-size", "30", "--max-minutes", "600",
             "--learning-rate", "0.01"]
    summaries = {}
    for devices in ("1", "2"):
        proc = charlm("--storage", store, "train", *shape, "--devices", devices)
        assert proc.returncode == 0, proc.stderr
        manifest = Store(store).manifest("models", proc.stdout.strip())
        summaries[devices] = (manifest["params"]["replicas"], manifest["summary"])
    assert summaries["1"][0] == 1 and summaries["2"][0] == 2
    one, two = summaries["1"][1], summaries["2"][1]
    assert one["steps"] == two["steps"] and one["characters"] == two["characters"]
    assert two["validation_bpc"] == pytest.approx(one["validation_bpc"], abs=1e-3)
    assert one["validation_bpc"] < 6.5  # it learned (6.9 untrained; warm-up is 100 steps)


@pytest.mark.slow
def test_compare_trains_each_cell_and_publishes_a_table(trained, capsys):
    store = Path(trained["store"])
    code, out, _ = run(capsys, store, "compare", "--cells", "rnn,gru", "--hidden", "8",
                       "--depth", "1", "--embedding", "4", "--batch-size", "32",
                       "--max-minutes", "0.05", "--samples", "5")
    assert code == 0
    table = Path(last_line(out))
    text = table.read_text()
    assert "| rnn" in text and "| gru" in text
    png = table.with_name("comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    rows = json.loads(table.with_name("comparison.json").read_text())
    assert [r["cell"] for r in rows] == ["rnn", "gru"]
    assert all(0 < r["test_bpc"] < 8 for r in rows)


def test_compare_bad_arguments(capsys, tmp_path):
    code, _, err = run(capsys, tmp_path, "compare", "--cells", "rnn,transformer")
    assert_usage_error(code, err, "transformer")


SHARED = Path(__file__).parents[2] / ".." / "shared" / "data"
EARLY, OCTOBER = SHARED / "abcnews-2003-02-to-09.csv", SHARED / "abcnews-2003-10.csv"


def test_evaluate_csv_scores_a_file_the_store_never_ingested(trained, capsys, tmp_path):
    store = Path(trained["store"])
    datasets = sorted(p.name for p in (store / "datasets").glob("2*"))
    csv = tmp_path / "later.csv"
    write_csv(csv, 40, seed=9)
    with csv.open("a") as handle:
        handle.write("2003-99-99,a bad date\n")
    code, out, err = run(capsys, store, "evaluate", "champion", "--csv", str(csv),
                         "--samples", "0")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["files"] == ["later.csv"] and metrics["quarantined_rows"] == 1
    assert metrics["quarantined_by_reason"] == {"bad date": 1}
    assert metrics["headlines"] + metrics["duplicates"] == 40 and 0 < metrics["bits_per_char"]
    assert sorted(p.name for p in (store / "datasets").glob("2*")) == datasets
    evaluation = Store(store).manifest("evaluations", metrics_evaluation_id(store))
    [source] = evaluation["params"]["files"]
    assert source["path"] == str(csv.resolve()) and len(source["sha256"]) == 64

    code, _, err = run(capsys, store, "evaluate", "champion", "--csv", str(csv), "--split",
                       "train")
    assert_usage_error(code, err, "--csv", "--split")
    code, _, err = run(capsys, store, "evaluate", "champion", "--csv")
    assert_usage_error(code, err, "--csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,text\n20031001,x\n")
    code, _, err = run(capsys, store, "evaluate", "champion", "--csv", str(bad))
    assert_runtime_error(code, err, "bad.csv", "missing column")


def test_evaluate_recent_view(trained, capsys):
    store = Path(trained["store"])
    code, out, err = run(capsys, store, "evaluate", "champion", "--split", "recent:2",
                         "--samples", "0")
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics["split"] == "recent:2" and metrics["recent"]["days"] == 2
    assert sum(metrics["recent"]["splits"].values()) == metrics["headlines"] == 120  # 60/day
    code, out, _ = run(capsys, store, "evaluate", "champion", "--split", "recent",
                       "--samples", "0")
    assert code == 0 and json.loads(out)["recent"]["days"] == 30
    for bad in ("recent:0", "recent:x", "recent:-1"):
        code, _, err = run(capsys, store, "evaluate", "champion", "--split", bad)
        assert_usage_error(code, err, repr(bad), "DAYS")


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
    assert line.startswith(f"drift not recorded for dataset {last_line(out)}: ")
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
