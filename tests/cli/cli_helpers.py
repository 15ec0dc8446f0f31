"""Helpers of the `charlm` command-line tests: running a command in-process (`run`) or as
the installed console script in its own process (`charlm`), checking its error output, and
writing inputs (headline CSVs, a model in the article's save format).

Commands run in-process through `main(argv)` where they can (a TensorFlow import per
subprocess would cost seconds each); the console-script tests run the program for real.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

from charlm.demo_corpus import make_corpus
from charlm.vocab import ALPHABET
from cli.main import main

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


ERROR_LINE = re.compile(r"^charlm: [^:]+: \S")  # storage.one_line: charlm: <what>: <cause>


def assert_usage_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert ERROR_LINE.match(lines[0]), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err


def assert_runtime_error(code: int, err: str, *needles: str) -> None:
    """Exit 1 and a last stderr line `charlm: <command>: <cause>` holding every needle
    (log lines, e.g. one per failed feed, may come before it)."""
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert ERROR_LINE.match(last), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in last


def metrics_evaluation_id(store: Path) -> str:
    return sorted(p.name for p in (store / "evaluations").glob("2*"))[-1]


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


def charlm(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The installed `charlm` program, as a user runs it (its own process)."""
    exe = Path(sys.executable).parent / "charlm"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([*command, *argv], capture_output=True, text=True, timeout=timeout,
                          env=env)
