"""Tabular data: CSV (one line per record, each value with its column name) and JSON or JSON
Lines (one ``path: value`` line per value).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from rag import IngestError
from rag.ingest.blocks import join_blocks
from rag.ingest.text import decode_text
from rag.ingest.types import Extracted, Options, Page, no_text

CSV_MIME = "text/csv"
JSON_MIME = "application/json"

# -- CSV ------------------------------------------------------------------------------------------

_DELIMITERS = ";,\t|"
_NUMBER = re.compile(r"^[-+]?\d[\d\s\u00a0]*(?:[.,]\d+)?%?$")


def _csv_dialect(text: str) -> tuple[str, str]:
    """(delimiter, text without an Excel ``sep=`` line)."""
    first, _, rest = text.partition("\n")
    m = re.fullmatch(r"\s*sep=(.)\s*", first)
    if m:
        return m.group(1), rest
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ""
    if not delimiter or delimiter not in first:
        counts = {d: first.count(d) for d in _DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","
    return delimiter, text


def extract_csv(data: bytes, filename: str, options: Options) -> Extracted:
    """A table export: one line per record, each value with its column name."""
    options.report(0.0, f"Чтение «{filename}»")
    text, encoding = decode_text(data, filename)
    delimiter, text = _csv_dialect(text.replace("\r\n", "\n").replace("\r", "\n"))
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        rows = [[" ".join(cell.split()) for cell in row] for row in reader]
    except csv.Error as exc:
        raise IngestError(
            f"«{filename}»: CSV не читается (строка {reader.line_num}: {exc}). "
            "Сохраните таблицу из Excel или LibreOffice как «CSV UTF-8» и загрузите снова."
        ) from exc
    rows = [row for row in rows if any(row)]
    if not rows:
        raise no_text(filename)
    first = rows[0]
    # A first row of numbers only is data, not column names (years as headers are names).
    if all(_NUMBER.match(c) for c in first if c):
        header: list[str] = []
    else:
        header, rows = first, rows[1:]
        if not rows:
            raise IngestError(f"«{filename}»: в таблице только строка заголовков, данных нет.")
    names: list[str] = []
    for i in range(max(len(header), *(len(r) for r in rows))):
        name = header[i] if i < len(header) and header[i] else f"Столбец {i + 1}"
        names.append(name if name not in names else f"{name} ({i + 1})")
    lines = ["; ".join(f"{names[i]}: {value}" for i, value in enumerate(row) if value) for row in rows]
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, join_blocks(lines))], mime_type=CSV_MIME, encoding=encoding)


# -- JSON -----------------------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())


def _json_lines(value: Any) -> Iterator[str]:
    """``path: value`` lines: objects by dotted keys, lists by [index]; scalar lists on one line."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            children = [(f"{path}.{k}" if path else str(k), v) for k, v in item.items()]
        elif isinstance(item, list) and any(isinstance(v, dict | list) for v in item):
            children = [(f"{path}[{i}]", v) for i, v in enumerate(item)]
        elif isinstance(item, list):
            if item:
                yield (
                    f"{path}: {', '.join(_scalar(v) for v in item)}"
                    if path
                    else ", ".join(_scalar(v) for v in item)
                )
            continue
        else:
            text = _scalar(item)
            if text:
                yield f"{path}: {text}" if path else text
            continue
        stack.extend(reversed(children))


def extract_json(data: bytes, filename: str, options: Options) -> Extracted:
    """JSON (or JSON Lines): one ``path: value`` line per value, Cyrillic as is."""
    options.report(0.0, f"Чтение «{filename}»")
    text, encoding = decode_text(data, filename)
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        value = _json_lines_file(text)
        if value is None:
            raise IngestError(
                f"«{filename}»: файл не является корректным JSON — {_json_error(exc)} "
                f"(строка {exc.lineno}, столбец {exc.colno}). Исправьте файл и загрузите снова."
            ) from exc
    except RecursionError as exc:
        raise IngestError(f"«{filename}»: JSON вложен слишком глубоко, его нельзя разобрать.") from exc
    body = join_blocks(_json_lines(value))
    if not body:
        raise no_text(filename, " JSON не содержит значений.")
    options.report(1.0, f"«{filename}» прочитан")
    return Extracted(pages=[Page(None, body)], mime_type=JSON_MIME, encoding=encoding)


def _json_lines_file(text: str) -> list[Any] | None:
    """JSON Lines (one value per line), or None when the text is not that either."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    try:
        return [json.loads(line) for line in lines]
    except (json.JSONDecodeError, RecursionError):
        return None


_JSON_ERRORS = {
    "Expecting value": "ожидалось значение",
    "Expecting property name enclosed in double quotes": "ожидалось имя поля в двойных кавычках",
    "Expecting ',' delimiter": "ожидалась запятая",
    "Expecting ':' delimiter": "ожидалось двоеточие",
    "Extra data": "лишние данные после конца JSON",
    "Unterminated string starting at": "незакрытая строка",
    "Invalid control character at": "недопустимый управляющий символ в строке",
    "Illegal trailing comma before end of object": "лишняя запятая перед концом объекта",
    "Illegal trailing comma before end of array": "лишняя запятая перед концом списка",
}


def _json_error(exc: json.JSONDecodeError) -> str:
    return _JSON_ERRORS.get(exc.msg, f"ошибка разбора: {exc.msg}")
