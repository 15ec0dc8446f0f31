"""The installed `charlm` console script, each run in its own process: one-line errors, stderr
free of TensorFlow's native chatter, `--devices` (devices are set when a process starts).
"""

from __future__ import annotations

import pytest
from cli_helpers import charlm, write_article, write_csv

from storage import Store


def test_console_script_reports_errors_in_one_line(tmp_path):
    proc = charlm("--storage", str(tmp_path), "evaluate", "nosuchmodel")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip().splitlines()[-1]]
    assert proc.stderr.startswith("charlm: evaluate: unknown models version or alias "
                                  "'nosuchmodel'")


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
             "--learning-rate", "0.01", "--ema", "0"]  # the raw weights: the split's own effect
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
