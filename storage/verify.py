"""What `Store.verify` reports: one `Problem` per inconsistency, so one bad version never
hides the others (the checks themselves are the store's, storage.store)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem"]


@dataclass(frozen=True)
class Problem:
    """One inconsistency found by ``Store.verify``."""

    kind: str
    id: str
    file: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.kind}/{self.id}" + (f"/{self.file}" if self.file else "")
        return f"{where}: {self.reason}"
