"""Defaults of the operations, in one place that imports no TensorFlow.

The operations (tasks/), the flows and the command line's help text all read them here, so
`charlm --help` shows the real defaults without loading a model library.
"""

from __future__ import annotations

from charlm.config import ModelConfig, TrainConfig

CHAMPION = "champion"  # the models alias generation uses by default (tasks.champion)
EVALUATION_SAMPLES = 1000  # headlines generated per evaluation to measure their quality
GENERATE_N = 20  # headlines per generation job

COMPARE_CELLS: tuple[str, ...] = ("rnn", "gru", "lstm")
COMPARE_NETWORK = ModelConfig(hidden=256, depth=2)
# Equal budgets: every model trains for the same minutes; early stopping is off.
COMPARE_TRAINING = TrainConfig(max_minutes=5.0, epochs=1000, patience=1000)
COMPARE_SAMPLES = 200  # headlines generated per model for the quality metrics

DEMO_HEADLINES = 12_000  # size of the embedded demo corpus
DEMO_N = 20  # headlines the demo generates
# Small enough to learn the demo grammar in a minute or two on 2 CPU cores.
DEMO_NETWORK = ModelConfig(cell="gru", hidden=128, depth=1, embedding=32, dropout=0.0)
DEMO_TRAINING = TrainConfig(batch_size=64, epochs=20, max_minutes=1.5, learning_rate=5e-3)

# The live feeds `ingest-feed` polls by default: ABC News "Just In" and "Top Stories".
FEED_URLS: tuple[str, ...] = (
    "https://www.abc.net.au/news/feed/51120/rss.xml",
    "https://www.abc.net.au/news/feed/45910/rss.xml",
)
FEED_MIN_NEW = 200  # the buffer becomes a dataset version at this many new headlines ...
FEED_MAX_WAIT_HOURS = 24.0  # ... or once its oldest item has waited this long
FEED_RETRIES = 3  # a fetch failing transiently (network, 5xx) is retried this often ...
FEED_RETRY_DELAY_S = 10.0  # ... after 10, 20, 40 s (exponential backoff)
