"""Names people type or upload, cleaned once at the door: file, user, collection and chat names.

A leaf module (it imports nothing of this project), so storage, rag and ui agree on one rule:

- Unicode NFC, so «й» typed two ways is one name;
- bidirectional controls (U+202A–U+202E, U+2066–U+2069, the marks U+200E/U+200F, U+061C)
  are removed: «счёт\u202efdp.txt» would otherwise display as «счётtxt.pdf» and reverse
  every label it is part of;
- zero-width and other invisible format characters (category Cf: U+200B–U+200D, U+2060,
  U+FEFF, the soft hyphen, …), control characters (Cc) and lone surrogates are removed;
  line and paragraph separators and tabs become spaces, runs of spaces one space;
- an empty result becomes «без имени» (for a file name: its stem, so «\u200b.txt» becomes
  «без имени.txt» and keeps the extension its format is detected by).
"""

from __future__ import annotations

import unicodedata

UNNAMED = "без имени"
# Categories whose characters are never part of a name: controls, invisible format characters
# (bidi controls and zero-width characters are all Cf) and surrogates.
_DROPPED = frozenset({"Cc", "Cf", "Cs"})
# Characters that separate words: kept as one space rather than gluing the words together.
_SPACES = frozenset({"Zl", "Zp", "Zs"})


def clean_text(text: str) -> str:
    """``text`` in NFC with every control, bidi, zero-width and format character removed.

    Whitespace (tabs and line breaks included) becomes single spaces; the ends are trimmed.
    """
    kept: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        category = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or category in _SPACES:
            kept.append(" ")
        elif category not in _DROPPED:
            kept.append(ch)
    return " ".join("".join(kept).split())


def clean_name(text: str, max_chars: int | None = None) -> str:
    """A display name: ``clean_text``, at most ``max_chars`` long, «без имени» when nothing is left."""
    name = clean_text(text)
    if max_chars is not None and len(name) > max_chars:
        name = name[:max_chars].rstrip()
    return name or UNNAMED


def clean_filename(filename: str) -> str:
    """The last part of an uploaded path, cleaned; a name with an extension only gets «без имени»."""
    base = clean_text(filename.replace("\\", "/").rsplit("/", 1)[-1])
    stem, dot, suffix = base.rpartition(".")
    if dot and not stem.strip(" ."):
        # «.txt» or «​.pdf» after cleaning: a name of nothing but its extension.
        return f"{UNNAMED}.{suffix}" if suffix.strip() else UNNAMED
    return base if base.strip(" .") else UNNAMED
