"""Epoch seconds of `charlm.train.fit` alone, for the checkout in the current directory.

An A/B of two versions of the training loop on one machine: run it once from each checkout
(it imports `charlm` from the working directory, and uses only the API both sides share),
one after the other on a quiet machine, and compare the printed epoch times. Data: the
pipeline's hash split of the first ROWS rows of the shared CSV; one-hot input at hidden
512 (the article's configuration), embedding 64 otherwise; dropout 0.

    git worktree add /tmp/before aab9930
    (cd /tmp/before && python /path/to/repo/benchmarks/fit_epochs.py lstm 512 3 1024 3 12000)
    python benchmarks/fit_epochs.py lstm 512 3 1024 3 12000
"""

import os
import resource
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.getcwd())  # the checkout under test, not this file's repository


def main() -> None:
    import charlm.train as train
    from benchmarks.common import DEFAULT_CSV, load_headlines, split_headlines
    from charlm.config import ModelConfig, TrainConfig
    from charlm.data import Corpus
    from charlm.model import build_model

    if len(sys.argv) != 7:
        raise SystemExit("usage: fit_epochs.py CELL HIDDEN DEPTH BATCH EPOCHS ROWS")
    cell, hidden, depth, batch, epochs, rows = sys.argv[1], *map(int, sys.argv[2:])
    split = split_headlines(load_headlines(DEFAULT_CSV)[:rows])
    corpus, validation = Corpus.from_texts(split["train"]), Corpus.from_texts(split["validation"])
    network = ModelConfig(cell=cell, hidden=hidden, depth=depth,
                          embedding=0 if hidden == 512 else 64, dropout=0.0)
    model = build_model(network, precision="auto")
    name = os.path.basename(os.getcwd())

    class Probe(train.Callback):
        def on_train_begin(self, info):
            self.usage = resource.getrusage(resource.RUSAGE_SELF)

        def on_epoch_end(self, epoch, logs):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = (usage.ru_utime + usage.ru_stime) - (self.usage.ru_utime + self.usage.ru_stime)
            print(f"{name} epoch {epoch}: {logs['seconds']:.1f} s, cores "
                  f"{cpu / logs['seconds']:.2f}, major faults "
                  f"{usage.ru_majflt - self.usage.ru_majflt}, validation "
                  f"{logs['validation_bpc']:.3f} bits/char", flush=True)
            self.usage = usage

    config = TrainConfig(batch_size=batch, epochs=epochs, max_minutes=600, patience=100)
    train.fit(model, corpus, validation, config, callbacks=[Probe()])


if __name__ == "__main__":
    main()
