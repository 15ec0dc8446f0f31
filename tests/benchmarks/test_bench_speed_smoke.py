"""Smoke test of the speed/memory benchmarks: every entry point runs in tiny mode and prints
its ratio and verdict lines (the figures themselves are meaningless at this size)."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_generate, bench_memory, bench_train, run_all

VERDICT = re.compile(r"\(target (>=|<=) [0-9.]+x\): (PASS|MISS)$", re.MULTILINE)


def test_train_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_train.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert "tensorflow" in out and "cpu_count" in out
    assert re.search(r"^ratio tiny .*charlm/article chars/s = [0-9.]+x", out, re.MULTILINE)
    assert re.search(r"^tiny +charlm .*one-hot (f32|bf16)", out, re.MULTILINE)
    assert re.search(r"^tiny +article ", out, re.MULTILINE)
    assert VERDICT.search(out)


def test_generate_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_generate.main(["--tiny"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ratio generate: charlm/article headlines/s = [0-9.]+x", out,
                     re.MULTILINE)
    assert "charlm steady state" in out and "article sample" in out
    assert VERDICT.search(out)


def test_memory_tiny(capsys: pytest.CaptureFixture[str]) -> None:
    # Real child processes for charlm (each imports TensorFlow, so the article's children
    # are left out to keep this quick); the article's child code runs in-process below.
    assert bench_memory.main(["--tiny", "--no-article"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ratio memory: charlm train-peak growth / corpus-buffer growth = "
                     r"-?[0-9.]+x", out, re.MULTILINE)
    assert re.search(r"^charlm +8,000 ", out, re.MULTILINE)
    assert VERDICT.search(out)


def test_memory_child_article_in_process() -> None:
    figures = bench_memory.child("article", 300, 1, 8, 1, 8, bench_memory.DEFAULT_CSV,
                                 reset_peak=False)
    assert figures["batches"] == 1 and figures["chars"] > 0
    assert figures["whole_peak_mib"] >= figures["train_peak_mib"] > 0


def test_run_all_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_all.main(["--tiny", "--only", "generate"]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("== summary"):]
    assert VERDICT.search(summary)


def test_verdict_and_flops() -> None:
    # LSTM 128x2 one-hot: 2*(118+128)*512 + 2*(128+128)*512 + 2*128*118 per forward char.
    forward = 2 * 246 * 512 + 2 * 256 * 512 + 2 * 128 * 118
    assert bench_train.forward_flops_per_char("lstm", 118, 128, 2) == forward
    assert bench_train.train_flops_per_char("lstm", 118, 128, 2) == 3 * forward
    assert bench_train.Verdict("b", "m", 10.0, 10.0).passed
    assert not bench_train.Verdict("b", "m", 9.9, 10.0).passed
    assert bench_train.Verdict("b", "m", 1.2, 1.5, higher_is_better=False).passed
    assert "MISS" in bench_train.Verdict("b", "m", float("nan"), 1.0).line()
