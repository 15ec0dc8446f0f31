"""benchmarks/bench_continual.py --quick: the shared CSVs replayed as nights, warm vs cold,
through the real commands; checks the table's shape and that its figures come from the
stores (skipped when ../shared/data is absent)."""

from __future__ import annotations

import re

import pytest

from benchmarks import bench_continual
from storage import Store

pytestmark = pytest.mark.skipif(
    not (bench_continual.DEFAULT_CSV.exists() and bench_continual.OCTOBER_CSV.exists()),
    reason="needs ../shared/data/abcnews-2003-02-to-09.csv and abcnews-2003-10.csv")


@pytest.mark.slow
def test_quick_run_prints_one_row_per_night_and_the_final_line(tmp_path, capsys) -> None:
    rows = bench_continual.main(["--quick", "--nights", "2", "--workdir", str(tmp_path)])
    out = capsys.readouterr().out
    # every run's command line is printed
    assert f"$ charlm --storage {tmp_path / 'warm'} train --from champion" in out
    assert f"$ charlm --storage {tmp_path / 'cold'} train --max-minutes" in out
    table = [line for line in out.splitlines() if re.match(r"\| [0-9]+ \|", line)]
    assert len(table) == len(rows) == 2
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == 11
        new_warm, new_cold, gap = (float(c) for c in cells[2:5])
        assert abs(new_cold - new_warm - gap) < 1e-3
        assert all(float(c) > 0 for c in cells[2:4] + cells[5:9])  # bits/char, seconds
        assert cells[9] in ("yes", "no") and cells[10] in ("yes", "no")
    # night 1: both stores' champion is the same base model, scored on the same new rows
    (_, warm1, cold1), (_, warm2, _) = rows
    assert warm1.new_bpc == cold1.new_bpc
    margin = re.search(r"^last 2 nights: cold - warm new-slice bits/char = (-?[0-9.]+) at the "
                       r"least, (-?[0-9.]+) on average \(target >= 0.05 each night\): "
                       r"(PASS|MISS)$", out, re.MULTILINE)
    assert margin and float(margin[1]) <= float(margin[2])
    assert margin[3] == ("PASS" if float(margin[1]) >= 0.05 else "MISS")  # the worst night
    assert re.search(r"^final: warm champion after night 2 test [0-9.]+ bits/char; cold model "
                     r"of 0.1 min [0-9.]+: (PASS|MISS)", out, re.MULTILINE)
    october = re.search(r"^final: warm champion on abcnews-2003-10.csv ([0-9.]+) bits/char; "
                        r"cold model of 0.1 min ([0-9.]+): (PASS|MISS)", out, re.MULTILINE)
    assert october and float(october[1]) > 0 and float(october[2]) > 0
    # the warm store's models form a chain: each warm model names the one it started from
    warm = Store(tmp_path / "warm")
    chained = [m for m in warm.versions("models") if m["parents"].get("models")]
    assert len(chained) == 2
    assert all("models" not in m["parents"] for m in Store(tmp_path / "cold").versions("models"))
    assert warm2.test_bpc is not None
