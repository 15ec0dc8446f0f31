"""The soak test (benchmarks/soak_store.py): its short variant on a directory and on S3
(moto), and each of its checks on made-up evidence, so that a check that could never fail
is noticed without a soak run.

The short variant runs every pipeline operation at once in 7 processes for half a minute
(then until every role has worked and two trainings raced for champion), SIGKILLing an
ingester, poller or gc every few seconds, and then checks the store: `verify` clean, every
alias resolving, every headline written or served in the latest dataset exactly once, the
champion the best of the models compared, every champion move recorded.
"""

from __future__ import annotations

import pytest

from benchmarks.soak_store import (
    SoakConfig,
    check_champion,
    check_ingest_outcomes,
    check_log,
    check_observed,
    check_rows,
    pending_ingests,
    run_soak,
)

DATASET = "20260101-000000-000000-d0d0d0"
A, B, C = (f"20260101-00000{n}-000000-a0a0a{n}" for n in (1, 2, 3))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "s3"])
def test_short_soak(backend, tmp_path):
    if backend == "s3":
        pytest.importorskip("moto.server")
    report = run_soak(SoakConfig.short(backend, seed=0, workdir=str(tmp_path)))
    print("\n".join(report.lines()))
    assert report.problems == []
    assert all(counts["ok"] > 0 for counts in report.ops.values()), report.ops
    assert set(report.ops) == {"ingest", "feed", "train", "generate", "gc"}
    assert report.decisions >= 2  # two trainings raced for champion
    assert sum(report.kills.values()) > 0
    assert report.rows["csv"] > 0 and report.rows["feed"] > 0


# -- the checks, on made-up evidence ---------------------------------------------------


def test_rows_must_be_there_exactly_once():
    expected = {"a": "base", "b": "ingest0", "c": "feed"}
    assert check_rows(["a", "b", "c"], expected) == []
    problems = check_rows(["a", "a", "c", "x"], expected)
    assert len(problems) == 3
    assert "1 headline(s) missing" in problems[0] and "'b'" in problems[0]
    assert "more than once" in problems[1] and "'a' x2" in problems[1]
    assert "never written" in problems[2] and "'x'" in problems[2]


def test_an_ingest_adds_all_its_rows_or_none_on_a_retry():
    intent = {"op": "ingest", "file": "/w/a.csv", "rows": ["x", "y", "z"]}
    whole = {"op": "ingested", "file": "/w/a.csv", "new_rows": 3}
    assert check_ingest_outcomes([intent, whole]) == []
    assert check_ingest_outcomes([intent, {**whole, "new_rows": 0, "retry": True}]) == []
    assert "added 0 of its 3 rows (first attempt)" in \
        check_ingest_outcomes([intent, {**whole, "new_rows": 0}])[0]
    assert "added 2 of its 3 rows (a retry)" in \
        check_ingest_outcomes([intent, {**whole, "new_rows": 2, "retry": True}])[0]
    assert pending_ingests([intent]) == [intent]
    assert pending_ingests([intent, whole]) == []


def _record(model, previous, reason):
    return {"time": "", "alias": "champion", "id": model, "previous": previous,
            "reason": reason}


def _first(model, bpc):
    return _record(model, None, f"first model: {model} {bpc:.4f} bits/char on the test split "
                                f"of dataset {DATASET}; trained from scratch")


def _versus(challenger, bpc, champion, champion_bpc, promoted):
    verdict = "promoted" if promoted else "champion kept"
    return _record(challenger if promoted else champion, champion,
                   f"challenger {challenger} {bpc:.4f} vs champion {champion} "
                   f"{champion_bpc:.4f} bits/char on the test split of dataset {DATASET}: "
                   f"{verdict}; trained from scratch")


def test_the_champion_is_the_best_of_the_models_compared():
    history = [_first(A, 6.9), _versus(B, 6.8, A, 6.9, True), _versus(C, 6.85, B, 6.8, False)]
    decisions = [{"model": B, "promoted": True, "challenger_bpc": 6.8, "champion": A},
                 {"model": C, "promoted": False, "challenger_bpc": 6.85, "champion": B}]
    assert check_champion(history, decisions, B, DATASET) == []
    # A promotion of a worse model (as a lost compare-and-swap would leave it).
    worse = history[:2] + [_versus(C, 6.85, B, 6.8, True)]
    problems = check_champion(worse, [], C, DATASET)
    assert any("promoted with 6.85 vs 6.8" in p for p in problems)
    assert any("is not the best of the 3 models compared" in p for p in problems)
    # A decision taken against a champion that no longer reigned.
    stale = history[:2] + [_versus(C, 6.7, A, 6.9, True)]
    stale[2]["previous"] = B
    assert any(f"compared with {A}, not the champion {B}" in p
               for p in check_champion(stale, [], C, DATASET))
    # A move that skipped a record, a trainer's decision that went unrecorded, a champion
    # that is not where the history ends.
    assert any("follows" in p for p in check_champion([history[0], history[2]], [], B,
                                                      DATASET))
    missing = [{"model": C, "promoted": True, "challenger_bpc": 6.7, "champion": B}]
    assert any("not in the champion history" in p
               for p in check_champion(history, missing, B, DATASET))
    assert any("its history ends at" in p for p in check_champion(history, [], A, DATASET))


def test_every_champion_move_in_the_log_is_recorded():
    history = [_first(A, 6.9), _versus(B, 6.8, A, 6.9, True)]

    def move(seq, model, record=True):
        return {"seq": seq, "actions": [{"op": "alias", "kind": "models", "name": "champion",
                                         "id": model, "record": record}]}

    entries = [move(0, A), {"seq": 1, "actions": []}, move(2, B)]
    assert check_log(entries, history) == []
    assert any("without a history record" in p
               for p in check_log([move(0, A), move(1, B, record=False)], history))
    assert any("numbered" in p for p in check_log([move(0, A), move(2, B)], history))
    removal = {"seq": 3, "actions": [{"op": "remove", "kind": "models", "ids": [B]}]}
    assert any("removes the champion" in p for p in check_log([*entries, removal], history))
    assert check_observed([None, A, B], history) == []
    assert check_observed([None, B], history) == []  # a reader may miss a move
    assert check_observed([B, A], history) != []  # but never see one undone
    assert check_observed([C], history) != []
