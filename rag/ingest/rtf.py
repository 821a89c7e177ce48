"""RTF documents, in whatever code page they declare."""

from __future__ import annotations

import codecs
import logging
import re

from striprtf.striprtf import rtf_to_text

from language import CYRILLIC, has_cyrillic
from rag import IngestError
from rag.ingest.archive import (
    RTF_MIME,
)
from rag.ingest.blocks import join_blocks, table_row
from rag.ingest.types import Extracted, Options, Page, no_text

log = logging.getLogger(__name__)

_ANSICPG = re.compile(rb"\\ansicpg(\d+)")
_SINGLE_BYTE_CODEPAGES = frozenset({874, *range(1250, 1259), 437, 850, 866})
_LATIN_MOJIBAKE = re.compile(r"[À-ÿ]")
_BINARY_GROUP = re.compile(
    r"\{(?:\\\*)?\\(?:pict|objdata|datastore|themedata|colorschememapping|blipuid)(?![a-z])"
)
_BRACE = re.compile(r"\\[{}\\]|[{}]")  # escaped braces and backslashes are text


def _fix_mojibake(text: str) -> str:
    """Cyrillic bytes decoded as cp1252 (a font declared \\fcharset0 in a Russian document)."""
    if has_cyrillic(text) or len(_LATIN_MOJIBAKE.findall(text)) < 3:
        return text
    try:
        fixed = text.encode("cp1252").decode("cp1251")
    except UnicodeError:
        return text
    letters = [c for c in fixed if c.isalpha() and not c.isascii()]
    cyrillic = sum(1 for c in letters if CYRILLIC.match(c))
    return fixed if letters and cyrillic / len(letters) > 0.9 else text


def _drop_binary_groups(rtf: str) -> str:
    """Remove pictures, OLE objects and themes: megabytes of hex that striprtf walks char by char."""
    if "\\bin" in rtf:  # raw binary may hold unbalanced braces; leave those files to striprtf
        return rtf
    out: list[str] = []
    pos = 0
    for start in _BINARY_GROUP.finditer(rtf):
        if start.start() < pos:
            continue  # inside a group already dropped
        depth, end = 0, len(rtf)
        for brace in _BRACE.finditer(rtf, start.start()):
            if brace.group() == "{":
                depth += 1
            elif brace.group() == "}":
                depth -= 1
                if depth == 0:
                    end = brace.end()
                    break
        out.append(rtf[pos : start.start()])
        pos = end
    out.append(rtf[pos:])
    return "".join(out)


def extract_rtf(data: bytes, filename: str, options: Options) -> Extracted:
    """Rich Text Format: text with the document's code page (\\ansicpg, \\fcharset, \\uN)."""
    options.report(0.0, f"Чтение «{filename}»")
    raw = data.removeprefix(codecs.BOM_UTF8).lstrip()
    if not raw.startswith(b"{\\rtf"):
        raise IngestError(
            f"«{filename}»: файл не является документом RTF. Пересохраните его в Word или LibreOffice "
            "как .rtf или .docx и загрузите снова."
        )
    m = _ANSICPG.search(raw[:4096])
    codepage = f"cp{int(m.group(1))}" if m and int(m.group(1)) in _SINGLE_BYTE_CODEPAGES else "cp1252"
    # RTF is 7-bit with \'xx escapes; bytes above 127 written raw by sloppy tools are in its code page.
    source = _drop_binary_groups(raw.decode(codepage, errors="replace"))
    try:
        text: str = rtf_to_text(source, encoding=codepage, errors="replace")  # type: ignore[no-untyped-call]
    except (LookupError, ValueError, IndexError) as exc:
        log.warning("damaged RTF %s: %s", filename, exc)
        raise IngestError(
            f"«{filename}»: документ RTF повреждён или использует неизвестную кодировку. "
            "Пересохраните его как .docx и загрузите снова."
        ) from exc
    text = _fix_mojibake(text.replace("\r", ""))
    # striprtf ends each table cell with '|' and each row with a line break.
    lines = (table_row(line[:-1].split("|")) if line.endswith("|") else line for line in text.split("\n"))
    body = join_blocks(" ".join(line.split()) for line in lines)
    if not body:
        raise no_text(filename)
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, body)], mime_type=RTF_MIME, encoding=codepage)


# -- ODT ------------------------------------------------------------------------------------------
