"""Contacts files as CRMs and Excel write them, read into records for `domain.contacts.read_contacts`.

- CSV in UTF-8 (with or without the BOM Excel puts first), UTF-16 (Excel's "Unicode text"), or
  Windows-1251 (Excel's "CSV" on a Russian-locale Windows); the encoding is detected, and said.
- Comma, semicolon (the Russian-locale default) or tab separated: told by the header line.
- `.xlsx` workbooks (the first sheet; openpyxl, a console dependency, never in the Lambda layer).

The header names the columns (`phone, contact_name[, responsible, crm_id]`, any case and order);
positions are the file's line (or sheet row) numbers, so rejections point at what a person sees.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

REQUIRED = ("phone", "contact_name")
_XLSX_MAGIC = b"PK\x03\x04"  # a zip: what an .xlsx is
_SEPARATORS = ",;\t"
_MIXED_WORD = re.compile(r"[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]")


class UnreadableFileError(ValueError):
    """The file cannot be read as contacts at all (the message says why and what to do)."""


@dataclass
class ContactsFile:
    """The records of a contacts file, and how it was read (for the console to say)."""

    records: Iterator[tuple[int, dict[str, Any]]]
    kind: str  # "CSV (utf-8, ';')", "xlsx (sheet Contacts)", ...
    missing: list[str]
    columns: list[str]


def read_contacts_file(source: BinaryIO, name: str = "") -> ContactsFile:
    data = source.read()
    if name.lower().endswith((".xlsx", ".xlsm")) or data.startswith(_XLSX_MAGIC):
        return _xlsx(data)
    if name.lower().endswith(".xls") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise UnreadableFileError("an old .xls workbook: save it as .xlsx or CSV from Excel")
    text, encoding = _decode(data)
    return _csv(text, encoding)


def _decode(data: bytes) -> tuple[str, str]:
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :].decode("utf-8", "strict"), "utf-8 with BOM"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8", "strict"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Not UTF-8: Excel's "CSV" on a Russian-locale Windows is Windows-1251, which decodes any byte
    # but 0x98; anything else (KOI8-R, ...) would read as mojibake and is refused below.
    try:
        text = data.decode("cp1251", "strict")
    except UnicodeDecodeError:
        raise UnreadableFileError("not UTF-8 nor Windows-1251: save it as CSV UTF-8 from Excel") from None
    # Latin-1 and its kin come out as Cyrillic letters inside Latin words ("Müller" as "Mьller"):
    # a word mixing both scripts is a wrong guess, not a name.
    if _MIXED_WORD.search(text):
        raise UnreadableFileError("not UTF-8, and not Windows-1251 Cyrillic either: save it as CSV UTF-8 from Excel")
    return text, "windows-1251"


def _separator(header_line: str) -> str:
    """The one of `,`, `;` and tab the header is split by (column names contain none of them)."""
    counts = {sep: header_line.count(sep) for sep in _SEPARATORS}
    return max(counts, key=lambda sep: counts[sep]) if any(counts.values()) else ","


def _column(name: Any) -> str:
    return str(name or "").replace("\ufeff", "").strip().lower()


def _csv(text: str, encoding: str) -> ContactsFile:
    header_line = next(iter(text.splitlines()), "")
    separator = _separator(header_line)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = [_column(name) for name in next(reader, [])]

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # Excel ends files with blank rows
            yield reader.line_num, dict(zip(header, row, strict=False))

    shown = {",": "','", ";": "';'", "\t": "tab"}[separator]
    return ContactsFile(
        records(), f"CSV ({encoding}, {shown}-separated)", [c for c in REQUIRED if c not in header], header
    )


def _xlsx(data: bytes) -> ContactsFile:
    try:
        from openpyxl import load_workbook
    except ImportError:
        raise UnreadableFileError(
            "reading .xlsx needs openpyxl: pip install 'pbxbridge[console]' (or save the sheet as CSV UTF-8)"
        ) from None
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zip, XML and its own errors for a broken file
        raise UnreadableFileError(f"not a readable .xlsx workbook ({type(exc).__name__})") from None
    sheet = workbook.worksheets[0]
    rows = sheet.iter_rows(values_only=True)
    header = [_column(name) for name in next(rows, ())]

    def records() -> Iterator[tuple[int, dict[str, Any]]]:
        try:
            for number, row in enumerate(rows, start=2):
                cells = [_cell(value) for value in row]
                if not any(cells):
                    continue
                yield number, dict(zip(header, cells, strict=False))
        finally:
            workbook.close()

    return ContactsFile(records(), f"xlsx (sheet {sheet.title!r})", [c for c in REQUIRED if c not in header], header)


def _cell(value: Any) -> str:
    # Excel keeps a typed phone as a number: 79101234567.0 is the phone 79101234567.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


__all__ = ["ContactsFile", "UnreadableFileError", "read_contacts_file"]
