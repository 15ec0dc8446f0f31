"""The PyTorch peer of benchmarks/bench_peer.py: the same networks trained as a competent
PyTorch user would, on a CPU.

Embedding 64 -> nn.LSTM / nn.GRU (depth layers, batch_first) -> nn.Linear(118); each
headline is one sequence: START, its characters -> its characters, end marker. Batches are
length-bucketed (shuffle, sort by length inside windows of 64 batches, shuffle the batch
order: charlm's own plan), padded only to their longest row, with the padding masked out of
the loss. Adam, gradient-norm clipping at 1. bf16 runs under torch.autocast("cpu",
bfloat16), which sends nn.LSTM / nn.GRU to oneDNN's bf16 RNN primitive. Each epoch ends
with a no-grad validation pass over the validation headlines (as charlm's epochs do).

Run in its own process by bench_peer (so TensorFlow's and PyTorch's thread pools never
share one), it prints one JSON line: per-epoch seconds and the characters counted.

    .venv/bin/python -m benchmarks.peer_torch --cell lstm --hidden 128 --depth 2 \
        --batch 128 --precision float32 --epochs 3 --rows 12000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import DEFAULT_CSV, load_headlines, split_headlines  # noqa: E402
from charlm.vocab import EOS, INPUT_SIZE, START, VOCAB_SIZE, encode  # noqa: E402

WINDOW = 64  # batches per length-sorted window (charlm.data.LENGTH_WINDOW)
EMBEDDING = 64
VALIDATION_LIMIT = 5000  # as charlm's TrainConfig.validation_limit


def encode_all(texts: list[str]) -> list[np.ndarray]:
    return [encode(t).astype(np.int64) for t in texts]


def plan(lengths: np.ndarray, batch: int, rng: np.random.Generator | None) -> list[np.ndarray]:
    """Row ids per batch: bucketed by length (shuffled when rng is given)."""
    n = len(lengths)
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        shuffled = rng.permutation(n)
        window = np.arange(n) // (batch * WINDOW)
        order = shuffled[np.lexsort((lengths[shuffled], window))]
    batches = [order[i:i + batch] for i in range(0, n, batch)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad(rows: list[np.ndarray]):
    """inputs (B, T), targets (B, T), mask (B, T) as torch tensors; T = longest + 1."""
    import torch

    steps = max(len(r) for r in rows) + 1
    inputs = np.full((len(rows), steps), EOS, np.int64)
    targets = np.full((len(rows), steps), EOS, np.int64)
    mask = np.zeros((len(rows), steps), np.float32)
    for i, r in enumerate(rows):
        inputs[i, 0] = START
        inputs[i, 1:len(r) + 1] = r
        targets[i, :len(r)] = r  # targets[i, len(r)] stays EOS: the end marker
        mask[i, :len(r) + 1] = 1.0
    return torch.from_numpy(inputs), torch.from_numpy(targets), torch.from_numpy(mask)


def build(cell: str, hidden: int, depth: int):
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(INPUT_SIZE, EMBEDDING)
            rnn = nn.LSTM if cell == "lstm" else nn.GRU
            self.rnn = rnn(EMBEDDING, hidden, depth, batch_first=True)
            self.out = nn.Linear(hidden, VOCAB_SIZE)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.rnn(self.embed(x))[0])  # (B, T, V)

    return Net()


def train(args: argparse.Namespace) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(args.seed)
    texts = load_headlines(args.csv)
    texts = texts[:args.rows] if args.rows else texts
    split = split_headlines(texts)
    train_rows = encode_all(split["train"])
    valid_rows = encode_all(split["validation"][:VALIDATION_LIMIT])
    lengths = np.array([len(r) for r in train_rows])
    chars = int(lengths.sum()) + len(train_rows)  # real characters + one end marker each
    valid_chars = sum(len(r) + 1 for r in valid_rows)
    net = build(args.cell, args.hidden, args.depth)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.learning_rate)
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    bf16 = args.precision == "bfloat16"
    valid_batches = [pad([valid_rows[i] for i in b])
                     for b in plan(np.array([len(r) for r in valid_rows]), args.batch, None)]
    epochs = []
    start = time.perf_counter()
    for epoch in range(args.epochs):
        rng = np.random.default_rng([args.seed, epoch])
        t0 = time.perf_counter()
        net.train()
        nats = 0.0
        for rows in plan(lengths, args.batch, rng):
            inputs, targets, mask = pad([train_rows[i] for i in rows])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = net(inputs)
            nll = loss_fn(logits.float().transpose(1, 2), targets)  # (B, T)
            loss = (nll * mask).sum() / mask.sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            nats += float(loss.detach()) * float(mask.sum())
        train_seconds = time.perf_counter() - t0
        net.eval()
        valid_nats = 0.0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            for inputs, targets, mask in valid_batches:
                nll = loss_fn(net(inputs).float().transpose(1, 2), targets)
                valid_nats += float((nll * mask).sum())
        epochs.append({"epoch": epoch + 1, "seconds": time.perf_counter() - t0,
                       "train_seconds": train_seconds,
                       "train_bpc": nats / chars / np.log(2),
                       "validation_bpc": valid_nats / valid_chars / np.log(2)})
        print(f"  peer epoch {epoch + 1}: {epochs[-1]['seconds']:.1f} s "
              f"(train {train_seconds:.1f} s), train {epochs[-1]['train_bpc']:.3f} bits/char, "
              f"validation {epochs[-1]['validation_bpc']:.3f}", file=sys.stderr, flush=True)
    return {"characters": chars, "epochs": epochs, "wall": time.perf_counter() - start,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", choices=("lstm", "gru"), required=True)
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--depth", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0, help="first CSV rows (0: all)")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args(argv)
    print(json.dumps(train(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
