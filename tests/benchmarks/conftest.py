"""Make the repository's `benchmarks` package importable however pytest is launched.

`benchmarks/` is not an installed package, and `pytest` (unlike `python -m pytest`) does
not put the working directory on sys.path.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
