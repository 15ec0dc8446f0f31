"""Smoke test of the speed/memory benchmarks: every entry point runs in tiny mode and prints
its ratio and verdict lines (the figures themselves are meaningless at this size)."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_generate, bench_memory, bench_train, harness, run_all


def _verdicts_agree(out: str) -> None:
    """Every verdict line says PASS exactly when its value meets its target."""
    lines = re.findall(r"= (-?[0-9.]+)x? \(target (>=|<=) ([0-9.]+)x?\): (PASS|MISS)$", out,
                       re.MULTILINE)
    assert lines
    for value, op, target, word in lines:
        met = float(value) >= float(target) if op == ">=" else float(value) <= float(target)
        assert word == ("PASS" if met else "MISS"), (value, op, target, word)


def test_train_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_train.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert "tensorflow" in out and "cpu_count" in out
    ratio = re.search(r"^ratio tiny .*charlm whole run / article chars/s = ([0-9.]+)x", out,
                      re.MULTILINE)
    assert ratio and float(ratio.group(1)) > 0
    # one row per epoch, each with train and validation seconds, never a retrace
    rows = re.findall(r"^ +(\d+) +([0-9.]+) +([0-9.]+) +([0-9.]+) .* (\d+)$", out, re.MULTILINE)
    assert [int(r[0]) for r in rows] == [1, 2]
    for _, seconds, train, valid, traces in rows:
        assert float(train) + float(valid) <= float(seconds) + 0.11  # printed rounded
        assert traces == "1"
    whole = re.search(r"whole run: ([0-9,]+) characters", out)
    assert whole and int(whole.group(1).replace(",", "")) > 0
    _verdicts_agree(out)


def test_gpu_epoch_cpu_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import gpu_epoch

    assert gpu_epoch.main(["--cpu-smoke"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^epoch 1: [0-9.]+ s training .* chars/s = .* of the measured matmul",
                     out, re.MULTILINE)
    assert re.search(r"^epoch 2: ", out, re.MULTILINE)
    assert "steady state (tracing and validation left out)" in out
    assert re.search(r"^scoring: 3,000 headlines", out, re.MULTILINE)
    assert re.search(r"^sampling: 64 headlines", out, re.MULTILINE)


def test_generate_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_generate.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ratio generate: charlm/article headlines/s = [0-9.]+x", out,
                     re.MULTILINE)
    assert "charlm steady state" in out and "article sample" in out
    _verdicts_agree(out)


def test_memory_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    # Real child processes for charlm (each imports TensorFlow, so the article's children
    # are left out to keep this quick); the article's child code runs in-process below.
    assert bench_memory.main(["--tiny", "--no-article"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ratio memory: charlm train-peak growth / corpus-buffer growth = "
                     r"-?[0-9.]+x", out, re.MULTILINE)
    assert re.search(r"^charlm +8,000 ", out, re.MULTILINE)
    _verdicts_agree(out)


def test_memory_child_article_in_process() -> None:
    figures = bench_memory.child("article", 300, 1, 8, 1, 8, bench_memory.DEFAULT_CSV,
                                 reset_peak=False)
    assert figures["batches"] == 1 and figures["chars"] > 0
    assert figures["whole_peak_mib"] >= figures["train_peak_mib"] > 0


def test_run_all_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--tiny", "--only", "generate"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("== summary"):]
    _verdicts_agree(summary)


def test_verdict_and_flops() -> None:
    # LSTM 128x2 one-hot: 2*(118+128)*512 + 2*(128+128)*512 + 2*128*118 per forward char.
    forward = 2 * 246 * 512 + 2 * 256 * 512 + 2 * 128 * 118
    assert harness.forward_flops_per_char("lstm", 118, 128, 2) == forward
    assert harness.train_flops_per_char("lstm", 118, 128, 2) == 3 * forward
    assert harness.Verdict("b", "m", 10.0, 10.0).passed
    assert not harness.Verdict("b", "m", 9.9, 10.0).passed
    assert harness.Verdict("b", "m", 1.2, 1.5, higher_is_better=False).passed
    assert "MISS" in harness.Verdict("b", "m", float("nan"), 1.0).line()
    # the printed figure never contradicts its verdict, however close to the target it is
    assert harness.Verdict("b", "m", 1.1004, 1.1, higher_is_better=False).line().endswith(
        "= 1.1004x (target <= 1.1x): MISS")
    assert harness.Verdict("b", "m", 1.0996, 1.1, higher_is_better=False).line().endswith(
        "= 1.10x (target <= 1.1x): PASS")
    assert harness.Verdict("b", "m", 0.99996, 1.0).line().endswith(
        "= 0.99996x (target >= 1x): MISS")
    for value in (1.09951, 1.1, 1.10049, 1.1000000001, 0.5, 2.0):
        for higher in (True, False):
            _verdicts_agree(harness.Verdict("b", "m", value, 1.1, higher).line())


def test_store_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("moto.server")
    from benchmarks import bench_store

    bench_store.main(["--tiny"])  # its exit status is the verdicts: meaningless at this size
    out = capsys.readouterr().out
    # the old side ran the previous engine's package, extracted from git, not this one's
    assert re.search(r"^  old local: .*/old-engine/storage/__init__.py$", out, re.M), out
    for step in ("publish dataset", "publish model\\+champion", "load champion cold",
                 "load champion warm", "generate 50"):
        # old local s, local s, S3 s, local/old, S3/local
        assert re.search(rf"^  {step} +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+x +[0-9.]+x$", out,
                         re.MULTILINE), out
        assert re.search(rf"^bench_store: local/old {step} = ", out, re.MULTILINE), out
    assert "skipped" not in out, out
    assert re.search(r"^  S3 requests of one model publish \+ set_alias: \d+", out, re.M), out
    assert "most downloads of one file = 1.00" in out, out
    _verdicts_agree(out)


def test_store_without_old_commit(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    from benchmarks import bench_store

    # a tarball install: no git history, so the old side is skipped with one line
    assert bench_store.extract_old(tmp_path, "0" * 40) is None
    assert capsys.readouterr().out.startswith("  old local: skipped (no git checkout")


def test_first_touch_prints_seconds_per_gib(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import first_touch

    assert first_touch.main(["--gib", "0.01", "--pauses", "0", "0.1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^first touch of 0.01 GiB in this process: [0-9.]+ s/GiB$", out, re.M)
    assert len(re.findall(r"^touch again after [0-9.]+ s idle: [0-9.]+ s/GiB$", out, re.M)) == 2
    with pytest.raises(SystemExit, match="--gib must be positive, not 0"):
        first_touch.main(["--gib", "0"])
