"""The README's tour stays true: its commands run, in order, on a small demo corpus.

The fenced block after the README's `<!-- tour` marker is parsed line by line; each
`.venv/bin/charlm ...` line runs in-process through the CLI with the Kaggle file and the next
month's file replaced by small demo-corpus CSVs and training shrunk to tiny settings
(`--max-minutes` dropped, TINY appended). Every command must succeed and print what its
comment promises.

Exempt, and why: the Prefect block (a server, a deployment and a worker cost about a minute
and are run end to end, the same scripts and deployments, by
tests/flows/test_deployments_e2e.py; here each `prefect deployment run` line is checked to
name a deployment of prefect.yaml and each script to exist), and the live-feed example (it
fetches abc.net.au; tests/cli/test_cli_ingest.py runs `charlm ingest-feed` against a local
feed server).
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import yaml
from cli_helpers import TINY, last_line, run, write_csv

from storage import Store

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CHARLM = ".venv/bin/charlm"


def fenced_after(marker: str, text: str) -> list[str]:
    """The lines of the first fenced code block after the line starting with `marker`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    opening = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
    closing = next(i for i in range(opening + 1, len(lines)) if lines[i].startswith("```"))
    return lines[opening + 1:closing]


def tour_commands() -> list[list[str]]:
    """The tour's `charlm` command lines as argument lists (comments dropped)."""
    commands = [shlex.split(line, comments=True) for line in
                fenced_after("<!-- tour", README.read_text())]
    return [words[1:] for words in commands if words and words[0] == CHARLM]


def shrink(argv: list[str], files: dict[str, str]) -> list[str]:
    """The tour's command with demo files for its data and tiny training settings."""
    argv = [files.get(word, word) for word in argv]
    if argv[0] == "train":
        while "--max-minutes" in argv:
            at = argv.index("--max-minutes")
            del argv[at:at + 2]
        argv += TINY
    return argv


def test_the_tour_runs_on_the_demo_corpus(capsys, tmp_path):
    commands = tour_commands()
    names = [argv[0] for argv in commands]
    for needed in ("ingest", "train", "evaluate", "generate", "drift", "status", "versions"):
        assert needed in names, f"the tour lost `charlm {needed}`"
    files = {"abcnews-date-text.csv": str(write_csv(tmp_path / "a.csv", 600, seed=1)),
             "new-headlines.csv": str(write_csv(tmp_path / "b.csv", 200, seed=2))}
    store_root = tmp_path / "store"
    for argv in commands:
        argv = shrink(argv, files)
        code, out, err = run(capsys, store_root, *argv)
        assert code == 0, f"charlm {' '.join(argv)}: {err}"
        store = Store(store_root)
        if argv[0] == "ingest":
            assert store.resolve("datasets", last_line(out)) == store.resolve("datasets",
                                                                              "latest")
        elif argv[0] == "train":
            assert store.resolve("models", last_line(out))
        elif argv[0] == "evaluate":
            assert json.loads(out)["bits_per_char"] > 0
        elif argv[0] == "generate":
            headlines = Path(last_line(out)).read_text().splitlines()
            assert len(headlines) == int(argv[argv.index("-n") + 1])
            if "--prefix" in argv:
                prefix = argv[argv.index("--prefix") + 1]
                assert all(h.startswith(prefix) for h in headlines)
        elif argv[0] == "drift":
            assert Path(last_line(out)).name == "trend.png"
        elif argv == ["status", "--json"]:
            facts = json.loads(out)
            assert facts["champion"]["id"] == store.resolve("models", "champion")
            assert facts["drift"]["dataset"] == store.resolve("datasets", "latest")
        elif argv[0] == "status":
            assert "champion" in out and "drift" in out


def test_the_tours_prefect_block_names_real_scripts_and_deployments():
    lines = fenced_after("### On a schedule", README.read_text())
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = set()
    for deployment in config["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        module = path.removesuffix(".py").replace("/", ".")
        flow = getattr(importlib.import_module(module), function)
        deployments.add(f"{flow.name}/{deployment['name']}")
    runs = [re.search(r"prefect deployment run (\S+)", line) for line in lines]
    named = [match.group(1) for match in runs if match]
    assert named and set(named) <= deployments, (named, deployments)
    scripts = [word for line in lines for word in shlex.split(line, comments=True)
               if word.startswith("scripts/")]
    assert scripts and all((ROOT / script).is_file() for script in scripts)
