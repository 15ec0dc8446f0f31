"""Style benchmark: bits/char on the ABC test split of a model trained with and without the
feed-title normalisation (ingestion/style.py), on a corpus half rendered in feed style.

Live feed titles are mixed case with punctuation (``PM's $1.5b plan 'on track'``), the
ABC training data is not (``pms 15b plan on track``). The experiment:

1. the ABC file's train and validation headlines (by the pipeline's hash split) are each
   rendered in a synthetic feed style with probability ``--share`` (`render`: sentence or
   title case, proper nouns and acronyms capitalised, ``$`` and decimal points on money,
   ``%`` for ``pc``, possessive apostrophes, quoted phrases in straight or curly quotes,
   hyphens, a colon, a question mark); test headlines stay as they are;
2. that CSV is ingested twice through the pipeline (`tasks.ingest.ingest_csvs`): as is
   (``IngestConfig()``, the default) and normalised (``IngestConfig(normalise=True)``, the
   ``--normalise`` flag and what every feed item gets);
3. one model per dataset is trained through the pipeline's training task for the same
   number of epochs with the same seed (an epoch-scheduled learning rate, so a busy
   machine changes the time taken, not the result);
4. both are scored on the same texts: the ABC test split of the original file.

    python benchmarks/bench_style.py --storage /tmp/style   # 2 runs of ~5 min on 2 cores

The rendering is made up, not measured from real feeds, so the figures show what mixing
two styles costs and that the normalisation removes that cost; they are not a forecast
for any particular share of live items.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import DEFAULT_CSV  # noqa: E402

# Capitalised in feed titles (a small, hand-made list of words common in 2003 ABC headlines).
PROPER = {
    w: w.capitalize() for w in (
        "australia australian australians sydney melbourne brisbane perth adelaide hobart "
        "darwin canberra iraq iraqi baghdad saddam hussein bush howard blair china japan "
        "korea indonesia bali israel israeli palestinian britain british france french "
        "america american qld tas vic queensland victoria tasmania beattie carr latham "
        "crean costello downer ruddock sars kalgoorlie geelong cairns townsville"
    ).split()
}
PROPER.update({w: w.upper() for w in "us uk nsw pm un afl nrl abc wa nt sa nz eu asx".split()})
MONEY = re.compile(r"^(\d+)([mb])$")  # the data's "15m": $15m or $1.5m in a feed
PERCENT = re.compile(r"^(\d+)pc$")  # the data's "20pc": 20% in a feed
QUESTION = {"is", "are", "will", "can", "should", "does", "do", "who", "what", "why", "how"}
HYPHEN_PREFIXES = {"anti", "pre", "post", "co", "non", "ex"}


def render(headline: str, rng: np.random.Generator) -> str:
    """`headline` (ABC style) as a feed might title it; `normalise` maps it back."""
    words = headline.split(" ")
    title_case = rng.random() < 0.3
    out = []
    for i, word in enumerate(words):
        money, percent = MONEY.match(word), PERCENT.match(word)
        if money:
            digits = money.group(1)
            if len(digits) >= 2 and rng.random() < 0.5:
                digits = digits[:-1] + "." + digits[-1]
            word = f"${digits}{money.group(2)}"
        elif percent:
            word = percent.group(1) + "%"
        elif word in PROPER:
            word = PROPER[word]
        elif word.endswith("s") and word[:-1] in PROPER:
            word = PROPER[word[:-1]] + "'s"
        elif title_case or i == 0:
            word = word[:1].upper() + word[1:]
        out.append(word)
    for i in range(len(out) - 1):  # anti war -> anti-war
        if out[i].lower() in HYPHEN_PREFIXES:
            out[i] = out[i] + "-"
    if len(out) >= 4 and rng.random() < 0.2:  # a quoted phrase
        start = int(rng.integers(1, len(out) - 1))
        stop = min(len(out), start + int(rng.integers(1, 4)))
        left, right = ("\u2018", "\u2019") if rng.random() < 0.5 else ("'", "'")
        out[start] = left + out[start]
        out[stop - 1] = out[stop - 1] + right
    if len(out) >= 4 and rng.random() < 0.1:
        out[int(rng.integers(0, 2))] += ":"
    text = " ".join(out).replace("- ", "-")
    if words[0] in QUESTION:
        text += "?"
    return text


def write_corpus(source: Path, target: Path, share: float, seed: int) -> dict[str, int]:
    """Render the train/validation headlines of `source` into `target`; counts."""
    import polars as pl

    from ingestion.split import split_of
    from ingestion.style import normalise

    rng = np.random.default_rng(seed)
    frame = pl.read_csv(source, schema_overrides={"publish_date": pl.String,
                                                  "headline_text": pl.String})
    texts = frame["headline_text"].fill_null("").str.strip_chars().to_list()
    rendered, round_trips, out = 0, 0, []
    for text in texts:
        if text and split_of(text) != "test" and rng.random() < share:
            styled = render(text, rng)
            rendered += 1
            round_trips += normalise(styled) == text
            out.append(styled)
        else:
            out.append(text)
    frame.with_columns(headline_text=pl.Series(out)).write_csv(target)
    return {"rows": len(texts), "rendered": rendered, "round_trips": round_trips}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, type=Path,
                        help="work folder: the rendered CSV and one store per run")
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="ABC headlines CSV")
    parser.add_argument("--share", type=float, default=0.5,
                        help="share of train/validation headlines rendered in feed style")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="rendering and training seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from charlm.config import IngestConfig, ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.evaluate import evaluate
    from charlm.model import load_model
    from ingestion.split import split_of
    from tasks.common import model_files
    from tasks.ingest import ingest_csvs
    from tasks.train import train_model

    args.storage.mkdir(parents=True, exist_ok=True)
    corpus = args.storage / f"feed-style-{args.share:g}-seed{args.seed}.csv"
    counts = write_corpus(args.csv, corpus, args.share, args.seed)
    test = Corpus.from_texts([t for t in _headlines(args.csv) if split_of(t) == "test"])
    network = ModelConfig(cell="gru", hidden=args.hidden, depth=args.depth, seed=args.seed)
    # epoch-scheduled: the budget is never reached, the cosine follows the epochs
    training = TrainConfig(epochs=args.epochs, patience=args.epochs, max_minutes=10**6,
                           seed=args.seed)
    results = {}
    for name, cleaning in (("as is", IngestConfig()),
                           ("normalised", IngestConfig(normalise=True))):
        store = str(args.storage / name.replace(" ", "-"))
        dataset = ingest_csvs.fn(store, [str(corpus)], cleaning).dataset_id
        start = time.perf_counter()
        trained = train_model.fn(store, dataset, network, training)
        model, _ = load_model(model_files(store, trained.model_id))
        results[name] = (evaluate(model, test)["bits_per_char"],
                         trained.validation_bpc, (time.perf_counter() - start) / 60)

    print(f"\n{args.csv.name}: {counts['rendered']:,} of {counts['rows']:,} headlines rendered "
          f"in feed style (share {args.share:g} of train+validation); normalise maps "
          f"{counts['round_trips'] / max(1, counts['rendered']):.1%} of them back exactly")
    print(f"GRU {args.hidden}x{args.depth}, {args.epochs} epochs, seed {args.seed}; test = the "
          f"ABC test split, {len(test):,} headlines as published")
    print(f"{'ingestion':<12} {'test bits/char':>14} {'own validation':>15} {'minutes':>8}")
    for name, (bpc, validation, minutes) in results.items():
        print(f"{name:<12} {bpc:>14.4f} {validation:>15.4f} {minutes:>8.1f}")


def _headlines(path: Path) -> list[str]:
    from benchmarks.common import load_headlines

    return load_headlines(path)


if __name__ == "__main__":
    main()
