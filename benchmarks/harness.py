"""What the speed and memory benchmarks share: verdict lines, machine facts, matmul peaks,
FLOP counts, machine load, and the --full/--quick/--tiny mode switches."""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import DEFAULT_CSV

VOCAB = 118  # output classes (ASCII 10..127)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MODES = ("full", "quick", "tiny")


@dataclass
class Verdict:
    """One target line: `value` (a ratio or a size) against `target`."""

    benchmark: str
    metric: str
    value: float
    target: float
    higher_is_better: bool = True
    unit: str = "x"

    def _shown(self) -> str:
        """The value with two decimals, or as many more as it takes for the printed figure to
        give the same verdict (1.1004 against <= 1.1 prints 1.1004, not a MISS beside 1.10)."""
        for digits in range(2, 10):
            text = f"{self.value:.{digits}f}"
            shown = Verdict(self.benchmark, self.metric, float(text), self.target,
                            self.higher_is_better, self.unit)
            if shown.passed == self.passed:
                return text
        return repr(self.value)

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        return (f"{self.benchmark}: {self.metric} = {self._shown()}{self.unit} "
                f"(target {op} {self.target:g}{self.unit}): {'PASS' if self.passed else 'MISS'}")


def machine_info() -> dict[str, str]:
    import keras
    import tensorflow as tf

    cpu = platform.processor() or "?"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "cpu": cpu,
        "cpu_count": f"{os.cpu_count()} (usable {usable})",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "gpu": ", ".join(d.name for d in tf.config.list_physical_devices("GPU")) or "none",
        "load average": load,
    }


def print_header(title: str, mode: str) -> None:
    print(f"== {title} [{mode} mode] ==")
    for key, value in machine_info().items():
        print(f"  {key:<13} {value}")
    if mode == "tiny":
        print("  NOTE: tiny mode is a smoke test; its ratios say nothing about the targets.")


def matmul_flops(dtype, n: int = 2048, seconds: float = 1.0) -> float:
    """FLOP/s of a timed loop of n x n tf.matmul in `dtype` (2 n^3 per product)."""
    import tensorflow as tf

    a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=dtype)
    b = tf.random.stateless_normal((n, n), seed=(3, 4), dtype=dtype)
    c = tf.matmul(a, b)  # warm-up
    float(c[0, 0])
    count, start = 0, time.perf_counter()
    while True:
        c = tf.matmul(a, b)
        float(c[0, 0])  # waits for the product
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= 2:
            return 2.0 * n**3 * count / elapsed


def forward_flops_per_char(cell: str, input_size: int, hidden: int, depth: int) -> float:
    """Matmul FLOPs of one forward time step: sum over layers of 2 (in + H) G H, plus the
    softmax projection 2 H V (gates' elementwise work ignored)."""
    total = 0.0
    for level in range(depth):
        width = input_size if level == 0 else hidden
        total += 2.0 * (width + hidden) * GATES[cell] * hidden
    return total + 2.0 * hidden * VOCAB


def train_flops_per_char(cell: str, input_size: int, hidden: int, depth: int) -> float:
    """Forward + backward (~2x forward: gradients for inputs and weights)."""
    return 3.0 * forward_flops_per_char(cell, input_size, hidden, depth)


def tiny_texts(count: int = 400) -> list[str]:
    """Deterministic synthetic headlines for tiny mode when the shared CSV is missing."""
    words = ("police council water govt court fire man plan health rain new to in for "
             "of on over says calls set back crash farmers storm").split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, int(rng.integers(3, 9)))) for _ in range(count)]


class MachineLoad:
    """CPU time of the whole machine between two reads of /proc/stat: how much went to this
    process, to other processes (niced ones apart) and to nobody (idle)."""

    def __init__(self) -> None:
        self.last = self._read()

    @staticmethod
    def _read() -> tuple[list[int], float]:
        try:
            ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except OSError:
            ticks = []
        times = os.times()
        return ticks, times.user + times.system

    def split(self) -> dict[str, float]:
        """Shares (0..1) of machine CPU time since the previous call: ours, others, niced
        others, idle."""
        (old, ours_old), (new, ours_new) = self.last, self._read()
        self.last = (new, ours_new)
        if not old or not new:
            return {}
        tick = os.sysconf("SC_CLK_TCK")
        delta = [b - a for a, b in zip(old, new)]
        total = sum(delta[:8]) / tick
        if total <= 0:
            return {}
        ours = (ours_new - ours_old) / total
        busy = (delta[0] + delta[2] + delta[5] + delta[6]) / tick / total  # user sys irq softirq
        return {"ours": ours, "others": max(busy - ours, 0.0), "niced": delta[1] / tick / total,
                "idle": (delta[3] + delta[4]) / tick / total}


def add_mode_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mode", choices=MODES, default="full")
    group.add_argument("--quick", dest="mode", action="store_const", const="quick",
                       help="short measurements (development on a busy machine)")
    group.add_argument("--tiny", dest="mode", action="store_const", const="tiny",
                       help="smoke test: tiny models, a fraction of a second each")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
