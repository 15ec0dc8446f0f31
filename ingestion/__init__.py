"""Ingestion: headline sources -> clean rows.

Everything that turns external headline sources into the clean, split, de-duplicated rows
of a dataset version:

| module | holds |
| --- | --- |
| `csv_reader` | reading headline CSVs (the ABC news format) into raw rows, bad rows marked |
| `reasons` | `IngestError` (a whole source is unusable) and the quarantine reasons |
| `cleaning` | the cleaning rules: raw rows -> (clean rows, quarantined rows) |
| `split` | the hash split rule: train / validation / test from the text alone |
| `plan` | merging new rows onto the previous version (`plan_ingest`), writing it; `added_rows` |
| `feed_fetch` | live feeds over HTTP: a safe conditional GET within limits; the `FeedError`s |
| `feeds` | RSS/Atom documents parsed into `FeedItem`s; `poll_feed` = fetch, then parse |
| `feed_rows` | which feed items are new; feed items as raw rows |
| `style` | the training data's headline style and the one normalisation into it |

A source reader produces raw rows (`cleaning.RAW_SCHEMA`); everything after that is shared
by every source. Rows end up in storage's dataset format (storage.datasets), the only
storage this package touches; it never imports prefect.
"""
