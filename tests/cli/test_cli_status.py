"""`charlm status`: the pipeline's state on one screen, and `--json` with the same facts.

One small pipeline store (two ingestions with drift, two trainings, a generation, feed items
waiting in the buffer) is built once; the tests read it and check that status never writes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import TINY, last_line, run, write_csv
from feedserver import FeedServer, Reply, rss, rss_item

from cli.main import main
from storage import Store


def _quiet(*argv: str) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
        assert main(list(argv)) == 0
    return last_line(printed.getvalue())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("status")
    store = str(root / "store")
    ids = {"store": store}
    ids["first"] = _quiet("--storage", store, "ingest", str(write_csv(root / "a.csv", 600, 1)))
    ids["model1"] = _quiet("--storage", store, "train", *TINY)
    ids["dataset"] = _quiet("--storage", store, "ingest", str(write_csv(root / "b.csv", 200, 2)))
    ids["model2"] = _quiet("--storage", store, "train", *TINY, "--seed", "3")
    ids["headlines"] = _quiet("--storage", store, "generate", "champion", "-n", "3")
    server = FeedServer()
    try:
        url = server.serve("/feed.xml", Reply(200, rss(
            [rss_item(f"Status story {n}", guid=f"urn:status:{n}") for n in range(4)])))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
            assert main(["--storage", store, "ingest-feed", url, "--min-new", "50"]) == 0
        assert printed.getvalue() == ""  # 4 < 50: they wait in the buffer
    finally:
        server.close()
    return ids


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root`: a file's bytes, None for a directory."""
    found: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            found[os.path.relpath(path, root)] = Path(path).read_bytes()
    return found


def test_status_json_holds_the_pipelines_facts(capsys, pipeline):
    code, out, _ = run(capsys, Path(pipeline["store"]), "status", "--json")
    assert code == 0
    facts = json.loads(out)
    store = Store(pipeline["store"])
    champion = store.resolve("models", "champion")
    assert facts["exists"] and not facts["empty"]
    assert facts["versions"]["datasets"] == 2 and facts["versions"]["models"] == 2
    assert facts["champion"]["id"] == champion
    assert facts["champion"]["network"] == "gru 8x1"
    assert facts["champion"]["dataset"] == store.manifest("models", champion)["parents"][
        "datasets"][0]
    assert facts["champion"]["test_bits_per_char"] > 0
    assert facts["champion"]["started_from"] is None
    assert facts["dataset"]["id"] == pipeline["dataset"]
    added = store.manifest("datasets", pipeline["dataset"])["summary"]["new_rows"]
    assert facts["dataset"]["new_headlines"] == added > 0
    assert facts["drift"]["dataset"] == pipeline["dataset"]
    assert facts["drift"]["model"] == pipeline["model1"]  # the champion when b.csv arrived
    assert facts["drift"]["new_headlines"] == added
    assert facts["drift"]["rising"] is None  # one measurement: no trend yet
    assert facts["feeds"]["items_waiting"] == 4 and facts["feeds"]["oldest_waiting_since"]
    assert Path(pipeline["headlines"]).parent.name == facts["generation"]["id"]
    assert facts["generation"]["headlines"] == 3
    training = facts["training"]
    assert training["model"] == pipeline["model2"]
    crowned = [c for c in store.alias_history("models", "champion")
               if c["id"] == pipeline["model2"]]
    if crowned:  # the decision is the store's: report it, whichever way it went
        assert training["outcome"] == "promoted" and training["why"] == crowned[-1]["reason"]
    else:
        assert training["outcome"] == "not promoted"
        assert training["why"].startswith(f"champion {pipeline['model1']} kept")
    assert facts["integrity"]["ok"] and facts["integrity"]["problems"] == 0


def test_status_text_fits_a_terminal_and_says_the_same(capsys, pipeline):
    code, out, _ = run(capsys, Path(pipeline["store"]), "status")
    assert code == 0
    lines = out.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines[1:])  # the first names the store's path
    text = " ".join(out.split())
    for label in ("champion", "dataset", "drift", "feeds", "generation", "training",
                  "integrity"):
        assert any(line.startswith(label) for line in lines), label
    store = Store(pipeline["store"])
    assert store.resolve("models", "champion") in text
    assert "4 item(s) waiting" in text and "integrity ok" in text


def test_status_never_writes(capsys, pipeline):
    root = Path(pipeline["store"])
    before = snapshot(root)
    for argv in (["status"], ["status", "--json"]):
        assert run(capsys, root, *argv)[0] == 0
    assert snapshot(root) == before  # same paths, byte-identical files, nothing new


def test_status_on_a_store_never_created(capsys, tmp_path):
    store = tmp_path / "nowhere"
    code, out, _ = run(capsys, store, "status")
    assert code == 0 and f"no store at {store}" in out
    code, out, _ = run(capsys, store, "status", "--json")
    assert code == 0 and json.loads(out) == {"store": str(store), "exists": False,
                                             "empty": True}
    assert not store.exists()


def test_status_on_an_empty_store(capsys, tmp_path):
    code, out, _ = run(capsys, tmp_path, "status")
    assert code == 0 and "holds nothing yet" in out
    code, out, _ = run(capsys, tmp_path, "status", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["empty"] and facts["champion"] is None
    assert facts["integrity"]["ok"]
    assert list(tmp_path.iterdir()) == []


def test_status_names_the_parent_of_a_warm_started_champion(capsys, pipeline, tmp_path):
    store = Store(shutil.copytree(pipeline["store"], tmp_path / "store"))
    started_from = store.resolve("models", "champion")
    source = store.manifest("models", started_from)
    with store.publish("models", parents={"datasets": [pipeline["dataset"]],
                                          "models": [started_from]},
                       params={"model": source["params"]["model"]}) as staging:
        (staging.path / "weights.bin").write_bytes(b"stand-in")
    store.set_alias("models", "champion", staging.id, reason="warm start, by hand")
    code, out, _ = run(capsys, store.root, "status", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["champion"]["id"] == staging.id
    assert facts["champion"]["started_from"] == started_from
    assert facts["champion"]["crowned_because"] == "warm start, by hand"
    code, out, _ = run(capsys, store.root, "status")
    assert f"started from model {started_from}" in " ".join(out.split())


def test_status_reports_a_broken_manifest_and_shows_the_rest(capsys, pipeline, tmp_path):
    root = Path(shutil.copytree(pipeline["store"], tmp_path / "store"))
    generation = Path(pipeline["headlines"]).parent.name
    manifest = root / "generations" / generation / "manifest.json"
    manifest.chmod(0o644)
    manifest.write_text("{not json")
    code, out, _ = run(capsys, root, "status", "--json")
    facts = json.loads(out)
    assert code == 0
    assert not facts["integrity"]["ok"]
    assert any(generation in p for p in facts["integrity"]["first_problems"])
    assert facts["champion"]["id"] == Store(root).resolve("models", "champion")
    code, out, _ = run(capsys, root, "status")
    assert code == 0 and "integrity   1 problem(s)" in out


def test_status_says_why_the_last_challenger_was_not_promoted(capsys, pipeline, tmp_path):
    """A challenger that lost: the two test evaluations train_challenger publishes side by
    side (the challenger's, then the champion's on the same split) give the reason."""
    store = Store(shutil.copytree(pipeline["store"], tmp_path / "store"))
    champion = store.resolve("models", "champion")
    dataset = pipeline["dataset"]
    params = store.manifest("models", champion)["params"]
    with store.publish("models", parents={"datasets": [dataset]}, params=params) as model:
        (model.path / "weights.bin").write_bytes(b"stand-in")
    for scored, bpc in ((model.id, 9.5), (champion, 6.25)):
        with store.publish("evaluations", parents={"datasets": [dataset], "models": [scored]},
                           params={"split": "test"}) as evaluation:
            (evaluation.path / "metrics.json").write_text("{}")
            evaluation.summary["bits_per_char"] = bpc
    code, out, _ = run(capsys, store.root, "status", "--json")
    training = json.loads(out)["training"]
    assert code == 0 and training["model"] == model.id
    assert training["outcome"] == "not promoted"
    assert training["why"] == (f"champion {champion} kept: 6.2500 <= 9.5000 bits/char on the "
                               f"test split of dataset {dataset}")
    assert training["test_bits_per_char"] == 9.5


def test_status_says_which_recurrent_path_trained_the_models(capsys, pipeline, tmp_path):
    store = Store(pipeline["store"])
    code, out, _ = run(capsys, store.root, "status", "--json")
    facts = json.loads(out)
    champion = store.resolve("models", "champion")
    for part, model in (("champion", champion), ("training", pipeline["model2"])):
        recorded = store.manifest("models", model)["summary"]["recurrent"]
        assert facts[part]["recurrent"] == recorded and recorded["path"] in ("kernels", "keras")
    code, out, _ = run(capsys, store.root, "status")
    text = " ".join(out.split())
    from charlm.kernels import KernelStatus

    said = KernelStatus.from_dict(facts["champion"]["recurrent"]).describe()
    assert f"trained on {said}" in text
    # A champion trained on Keras' loops says why; one from before the record says so.
    copy = Store(shutil.copytree(pipeline["store"], tmp_path / "store"))
    fallback = KernelStatus("keras", "float32", "no C++ compiler (g++ or $CXX) on PATH (about "
                            "2x slower)", True)
    for summary in ({"recurrent": fallback.to_dict()}, {}):
        with copy.publish("models", parents={"datasets": [pipeline["dataset"]]},
                          params=store.manifest("models", champion)["params"]) as staging:
            (staging.path / "weights.bin").write_bytes(b"stand-in")
            staging.summary.update(summary)
        copy.set_alias("models", "champion", staging.id, reason="by hand")
        code, out, _ = run(capsys, copy.root, "status", "--json")
        assert json.loads(out)["champion"]["recurrent"] == (summary.get("recurrent"))
        code, out, _ = run(capsys, copy.root, "status")
        text = " ".join(out.split())
        assert code == 0 and (
            "trained on keras, float32: no C++ compiler (g++ or $CXX) on PATH (about 2x "
            "slower)" if summary else "recurrent path not recorded") in text
