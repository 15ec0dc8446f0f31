"""The embedded default corpus: a deterministic grammar of ABC-style news headlines.

The demo needs data on a fresh machine without downloads or copied text, so
headlines are generated from hand-written templates and word lists. They are
lowercase like the ABC's, vary in length and structure, and repeat enough
patterns that a small model learns them in a minute or two.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

PLACES = (
    "adelaide", "alice springs", "ballarat", "bendigo", "brisbane", "broome", "bunbury",
    "cairns", "canberra", "darwin", "dubbo", "geelong", "gold coast", "hobart", "kalgoorlie",
    "launceston", "mackay", "melbourne", "mildura", "newcastle", "orange", "perth",
    "port augusta", "rockhampton", "sydney", "tamworth", "toowoomba", "townsville",
    "wagga", "wollongong",
)
REGIONS = ("nsw", "qld", "wa", "sa", "tas", "vic", "nt", "act", "the north west",
           "the riverina", "the pilbara", "the hunter", "the kimberley", "gippsland")
ACTORS = (
    "council", "police", "govt", "minister", "premier", "farmers", "union", "residents",
    "doctors", "nurses", "teachers", "opposition", "court", "mayor", "firefighters",
    "scientists", "students", "fishers", "miners", "traders", "health service", "greens",
    "labor", "liberals", "nationals", "accc", "rspca", "ses", "coroner", "magistrate",
)
VERBS = (
    "calls for", "rejects", "backs", "welcomes", "plans", "considers", "defends",
    "questions", "announces", "delays", "approves", "seeks", "warns of", "slams",
    "investigates", "reviews", "funds", "opposes", "wants", "launches",
)
THINGS = (
    "water restrictions", "new hospital", "drought aid", "pay rise", "land clearing laws",
    "school closure", "rate rise", "bypass plan", "mine expansion", "bushfire inquiry",
    "fishing ban", "housing plan", "power prices", "rail upgrade", "budget cuts",
    "tourism boost", "airport upgrade", "youth centre", "dam proposal", "port deal",
    "wind farm", "gas pipeline", "ambulance response times", "speed cameras",
    "koala habitat", "rural doctors scheme", "flood levee", "pokies reform",
)
PEOPLE = ("man", "woman", "teenager", "driver", "pilot", "fisherman", "tourist", "boy",
          "girl", "hiker", "cyclist", "surfer", "farmer", "nurse", "teacher")
EVENTS = (
    "charged over", "jailed for", "fined for", "hurt in", "rescued after", "killed in",
    "dies in", "found guilty of", "cleared of", "questioned over", "injured in",
)
INCIDENTS = (
    "crash", "fire", "assault", "robbery", "boat accident", "stabbing", "fraud",
    "shark attack", "house fire", "hit and run", "drug raid", "armed hold up", "flood",
)
TEAMS = ("crows", "lions", "eagles", "swans", "tigers", "blues", "hawks", "bombers",
         "roos", "dockers", "storm", "broncos", "knights", "sharks", "raiders")
SPORT_VERBS = ("beat", "thrash", "edge", "down", "stun", "hold off", "fall to", "draw with")
NUMBERS = ("2", "3", "5", "10", "12", "20", "50", "100", "1m", "5m", "20m", "100m")
MARKETS = ("dollar", "shares", "wool prices", "wheat crop", "cattle prices", "gold price",
           "petrol prices", "interest rates", "jobless rate", "house prices")
MOVES = ("rises", "falls", "slumps", "jumps", "steady", "hits record high", "eases")
FLAVOURS = ("", "", "", " again", " today", " amid protests", " after meeting",
            " despite concerns", " for second year")


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def make_headline(rng: np.random.Generator) -> str:
    """One headline from a randomly chosen template."""
    kind = int(rng.integers(8))
    place = _pick(rng, PLACES) if rng.random() < 0.7 else _pick(rng, REGIONS)
    if kind <= 1:
        text = f"{place} {_pick(rng, ACTORS)} {_pick(rng, VERBS)} {_pick(rng, THINGS)}"
    elif kind == 2:
        text = f"{_pick(rng, ACTORS)} {_pick(rng, VERBS)} {_pick(rng, THINGS)} in {place}"
    elif kind == 3:
        text = f"{place} {_pick(rng, PEOPLE)} {_pick(rng, EVENTS)} {_pick(rng, INCIDENTS)}"
    elif kind == 4:
        text = f"{_pick(rng, PEOPLE)} {_pick(rng, EVENTS)} {place} {_pick(rng, INCIDENTS)}"
    elif kind == 5:
        a, b = rng.choice(len(TEAMS), size=2, replace=False)
        text = f"{TEAMS[a]} {_pick(rng, SPORT_VERBS)} {TEAMS[b]}"
    elif kind == 6:
        text = f"{_pick(rng, MARKETS)} {_pick(rng, MOVES)}"
    else:
        text = (f"${_pick(rng, NUMBERS)} for {_pick(rng, THINGS)} in {place}"
                if rng.random() < 0.5 else
                f"{_pick(rng, NUMBERS)} {_pick(rng, PEOPLE)}s {_pick(rng, EVENTS)} "
                f"{_pick(rng, INCIDENTS)}")
    return text + _pick(rng, FLAVOURS)


def make_corpus(n: int, rng: np.random.Generator,
                start: dt.date = dt.date(2003, 2, 19)) -> list[tuple[str, str]]:
    """n (publish_date YYYYMMDD, headline) rows, about 60 headlines per day."""
    if n < 1:
        raise ValueError(f"corpus size must be >= 1, got {n}")
    rows = []
    for i in range(n):
        day = start + dt.timedelta(days=i // 60)
        rows.append((day.strftime("%Y%m%d"), make_headline(rng)))
    return rows
