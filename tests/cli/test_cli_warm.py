"""`charlm train --from MODEL`: a warm start from a stored model, and its bad inputs.

The module's `trained` store holds one tiny champion (cli_helpers.TINY: gru 8x1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cli_helpers import assert_usage_error, last_line, run

from charlm.config import TrainConfig
from charlm.model import read_config
from storage import Store
from storage.layout import ModelFiles

BUDGET = ["--epochs", "1", "--max-minutes", "0.2", "--batch-size", "32"]


def models(store: Path) -> list[str]:
    return [m["id"] for m in Store(store).versions("models")]


def test_train_from_the_champion_takes_its_network_and_records_the_chain(trained, capsys):
    store_dir = Path(trained["store"])
    store = Store(store_dir)
    champion = store.resolve("models", "champion")
    code, out, err = run(capsys, store_dir, "train", "--from", "champion", *BUDGET)
    assert code == 0, err
    model_id = last_line(out)
    assert f"model {model_id} (warm from {champion})" in err
    manifest = store.manifest("models", model_id)
    assert manifest["parents"] == {"datasets": [store.resolve("datasets", "latest")],
                                   "models": [champion]}
    network, saved = read_config(ModelFiles.at(store.path("models", model_id)))
    parent, _ = read_config(ModelFiles.at(store.path("models", champion)))
    assert network == parent  # gru 8x1 embedding 4: the champion's, not the CLI's defaults
    assert saved["train"]["learning_rate"] == TrainConfig().warm_learning_rate
    assert saved["started_from"] == champion and saved["result"]["resumed_from"] is None
    # `charlm versions` shows the chain: each warm model names the model it started from
    code, out, _ = run(capsys, store_dir, "versions", "models")
    [line] = [line for line in out.splitlines() if line.split()[1] == model_id]
    assert f"models:{champion}" in line
    # an explicit --peak-lr is the warm run's peak; a shape option equal to the model's is fine
    code, out, err = run(capsys, store_dir, "train", "--from", model_id, "--hidden", "8",
                         "--peak-lr", "0.0007", *BUDGET)
    assert code == 0, err
    _, saved = read_config(ModelFiles.at(store.path("models", last_line(out))))
    assert saved["train"]["learning_rate"] == 0.0007
    assert saved["train"]["min_learning_rate"] <= 0.0007
    assert store.manifest("models", last_line(out))["parents"]["models"] == [model_id]


def _copy_model(store: Store, model_id: str, change) -> str:
    """Publish a copy of `model_id` with `change(files)` applied before sealing."""
    source = ModelFiles.at(store.path("models", model_id))
    with store.publish("models", parents=store.manifest("models", model_id)["parents"]) as st:
        for name in (source.config, source.vocabulary, source.weights):
            shutil.copy(name, st.path / name.name)
        change(ModelFiles.at(st.path))
    return st.id


def test_train_from_a_bad_model_is_a_usage_error_and_publishes_nothing(trained, capsys):
    store_dir = Path(trained["store"])
    store = Store(store_dir)
    champion = store.resolve("models", "champion")

    def other_alphabet(files: ModelFiles) -> None:
        vocab = json.loads(files.vocabulary.read_text())
        files.vocabulary.write_text(json.dumps({**vocab, "alphabet": vocab["alphabet"][:-1]}))

    foreign = _copy_model(store, champion, other_alphabet)
    corrupt = _copy_model(store, champion, lambda files: None)
    weights = ModelFiles.at(store.path("models", corrupt)).weights
    weights.chmod(0o644)
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")  # after publishing
    before = models(store_dir)
    cases = [
        (["--from", "nosuchmodel"], ["nosuchmodel", "unknown models version"]),
        (["--from", "champion", "--hidden", "16"],
         ["champion", champion, "--hidden 16 (model has 8)"]),
        (["--from", "champion", "--cell", "lstm", "--depth", "2"],
         ["--cell lstm (model has gru)", "--depth 2 (model has 1)"]),
        (["--from", foreign], [foreign, "different alphabet"]),
        (["--from", corrupt], [corrupt, "corrupt", "model.weights.h5"]),
    ]
    for options, needles in cases:
        code, _, err = run(capsys, store_dir, "train", *options, *BUDGET)
        assert_usage_error(code, err, "cannot start from model", *needles)
    assert models(store_dir) == before  # nothing published
    assert store.resolve("models", "champion") == champion
