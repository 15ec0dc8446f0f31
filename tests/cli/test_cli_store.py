"""`charlm verify`, `gc`, `import-article` and `demo`, in-process; usage errors and help text.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import (
    assert_runtime_error,
    assert_usage_error,
    last_line,
    run,
    write_article,
    write_csv,
)

from cli.main import main


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
    code, out, err = run(capsys, store, "verify", "--quick")  # sizes and hashes unread
    assert code == 0 and last_line(out) == "ok" and "--quick" in err
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
    code, _, err = run(capsys, store, "gc", "--keep", "1", "--retention-days", "-1")
    assert_usage_error(code, err, "--retention-days")
    leftover = store / "datasets" / "20240101-000000-000000-abcdef"
    leftover.mkdir()
    (leftover / "part.bin").write_bytes(b"an interrupted publish")
    code, out, _ = run(capsys, store, "gc", "--keep", "1", "--apply")
    assert code == 0 and leftover.exists()  # young: maybe a publish in progress
    code, out, _ = run(capsys, store, "gc", "--keep", "1", "--apply", "--retention-days", "0")
    assert code == 0 and not leftover.exists()


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
