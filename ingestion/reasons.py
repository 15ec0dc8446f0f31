"""Why input cannot be ingested: `IngestError` for a whole source, a reason for one row.

A row that cannot become a clean headline is quarantined with one of the exact `REASONS`,
never silently dropped. The first four are set by a source reader (see
ingestion.csv_reader) in the raw frame's `reason` column; the rest by the cleaning rules
(ingestion.cleaning), checked in this order (the first that applies wins):

- "undecodable bytes": the row holds bytes that are not valid UTF-8;
- "NUL bytes": the row holds NUL (0x00) bytes, a sign of binary or UTF-16 data;
- "ragged row": the row has a different number of fields than the header;
- "bad quoting": text follows a closing quote, or a quoted field never closes;
- "bad date": `publish_date` (surrounding spaces ignored) is not a valid calendar
  date written as YYYYMMDD;
- "empty after cleaning": nothing is left of the headline after cleaning;
- "longer than max_headline_length": the cleaned headline is longer than
  `IngestConfig.max_headline_length`.

A feed entry is rejected (ingestion.feeds) for "no title", or for:

- "unexpanded entity": its title still holds an entity reference the XML parser did not
  expand (``&j;``, declared in the document's DTD as a billion-laughs document declares
  it; parsers refuse such expansion on purpose). The title's real text is unknown, and
  the normalisation would turn its ``&`` into " and ", storing the headline "and j".
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "BAD_DATE",
    "BAD_QUOTING",
    "EMPTY",
    "NUL_BYTES",
    "RAGGED",
    "REASONS",
    "TOO_LONG",
    "UNDECODABLE",
    "UNEXPANDED_ENTITY",
    "IngestError",
    "in_reason_order",
]


class IngestError(ValueError):
    """Input that cannot be ingested at all; the message is one line naming the source."""


UNDECODABLE = "undecodable bytes"
NUL_BYTES = "NUL bytes"
RAGGED = "ragged row"
BAD_QUOTING = "bad quoting"
BAD_DATE = "bad date"
EMPTY = "empty after cleaning"
TOO_LONG = "longer than max_headline_length"
REASONS: tuple[str, ...] = (UNDECODABLE, NUL_BYTES, RAGGED, BAD_QUOTING, BAD_DATE, EMPTY, TOO_LONG)
UNEXPANDED_ENTITY = "unexpanded entity"  # a feed title's reason (ingestion.feeds)


def in_reason_order(counts: Mapping[str, int]) -> dict[str, int]:
    """`counts` (rows per reason) in `REASONS` order; unknown reasons last, by name."""
    ordered = [r for r in REASONS if r in counts] + sorted(set(counts) - set(REASONS))
    return {r: int(counts[r]) for r in ordered}
