"""What this machine charges for memory a process touches for the first time.

On some virtual machines the host backs guest memory lazily and takes pages back once the
guest frees them ("free page reporting", `dmesg | grep -i "page reporting"`). There a
training run's first epoch pays for every gigabyte its step touches, and so does any later
step that needs memory which was freed a few seconds before. This prints seconds per GiB
touched, fresh and after idle pauses, so a benchmark's first-epoch figures can be read
against it (numpy only; nothing of charlm).

    .venv/bin/python -m benchmarks.first_touch [--gib 1] [--pauses 0 1 5 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

PAGE = 4096


def touch(gib: float) -> float:
    """Seconds to write one byte per page of a fresh `gib` GiB buffer."""
    buffer = np.empty(int(gib * 2**30), dtype=np.uint8)
    start = time.perf_counter()
    buffer[::PAGE] = 1
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="buffer size per measurement")
    parser.add_argument("--pauses", type=float, nargs="+", default=[0.0, 1.0, 5.0, 20.0],
                        help="idle seconds between freeing a buffer and touching a new one")
    args = parser.parse_args(argv)
    if args.gib <= 0:
        raise SystemExit(f"--gib must be positive, not {args.gib}")
    print(f"first touch of {args.gib:g} GiB in this process: "
          f"{touch(args.gib) / args.gib:.2f} s/GiB")
    for pause in args.pauses:
        touch(args.gib)  # the pages now belong to the process once
        time.sleep(pause)
        print(f"touch again after {pause:g} s idle: {touch(args.gib) / args.gib:.2f} s/GiB",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
