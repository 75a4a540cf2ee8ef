"""Phone numbers as the PBX sends them, read into E.164 so one client is one key."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

# phonenumbers refuses longer input itself; checking first keeps hostile bodies cheap.
_MAX_RAW_LENGTH = 64

# What a phone looks like once read into ASCII: an optional `+`, digits and the separators people
# write. Every phone field of every model is read by `normalize_phone`, whose input must have this
# shape (after other scripts' digits are read as their values) and then be a number: a short number
# (2 to 8 digits) or one `phonenumbers` finds valid or possible. The OpenAPI document reuses it.
PHONE_PATTERN = r"^ *\+?[0-9 ().\-]*[0-9][0-9 ().\-]*$"
MIN_SHORT_DIGITS = 2
# Longer digit strings that are no valid number anywhere are refused rather than stored as keys.
MAX_SHORT_DIGITS = 8
_SHAPE = re.compile(PHONE_PATTERN)
# Dashes and spaces from word processors and other keyboards, read as the ASCII separators.
_SEPARATOR_LOOKALIKES = {ord(ch): "-" for ch in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"} | {
    ord(ch): " " for ch in "\u00a0\u2007\u202f\u3000"
}


class InvalidPhoneError(ValueError):
    """The value cannot be a telephone number."""


@dataclass(frozen=True, slots=True)
class Phone:
    """A phone number as received (`raw`) and as stored and matched (`e164`).

    `e164` is E.164 (`+79101234567`), except for short numbers (service numbers such as `112`,
    internal extensions such as `708`), which have no E.164 form: for those it is their bare digits.
    """

    raw: str
    e164: str

    @property
    def digits(self) -> str:
        """Without the `+`: the form the PBX sends and accepts."""
        return self.e164.lstrip("+")

    @property
    def is_short(self) -> bool:
        return not self.e164.startswith("+")


def ascii_phone_text(raw: str) -> str:
    """`raw` with every script's decimal digits (Arabic-Indic ٧٩١, full-width ７９１, Devanagari, ...)
    read as ASCII digits and full-width `+`, brackets and dashes as theirs.

    Raises InvalidPhoneError for what no number contains: lone surrogates, control and format
    characters, digits that are not decimal (superscripts ², circled ①), letters, and anything
    else outside PHONE_PATTERN. What comes back is ASCII only, so a stored key is always digits.
    """
    out: list[str] = []
    for ch in raw:
        if ch.isascii():
            out.append(ch)
            continue
        category = unicodedata.category(ch)
        if category == "Nd":
            out.append(str(unicodedata.decimal(ch)))
        elif category in ("Cs", "Cc", "Cf", "Co", "Cn") or ch.isdigit() or ch.isnumeric():
            raise InvalidPhoneError("not a phone number")
        else:
            # NFKC turns full-width `＋（）－` and compatibility spaces into their ASCII forms.
            out.append(unicodedata.normalize("NFKC", ch).translate(_SEPARATOR_LOOKALIKES))
    text = "".join(out).translate(_SEPARATOR_LOOKALIKES)
    if not _SHAPE.fullmatch(text):
        raise InvalidPhoneError("not a phone number")
    return text


@lru_cache(maxsize=4096)
def normalize_phone(raw: str, region: str = "RU") -> Phone:
    """Read `raw` as the PBX or a person writes it; raise InvalidPhoneError if it is no number.

    The PBX sends `79101234567` (E.164 without `+`), CSV rows carry `+7...`, people type
    `8 (910) 123-45-67`, and other tenants send national forms (`0...`). The tenant's region reads
    national forms; digits that only make sense as an international number are tried as one. A
    valid number wins over a merely possible one; short numbers (`112`, `708`) are kept as digits.
    """
    if not raw or len(raw) > _MAX_RAW_LENGTH:
        raise InvalidPhoneError("not a phone number")
    text = ascii_phone_text(raw).strip()
    digits = "".join(ch for ch in text if "0" <= ch <= "9")
    candidates = [text] if text.startswith("+") else [text, "+" + digits] if digits else [text]
    possible: list[phonenumbers.PhoneNumber] = []
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return Phone(raw=raw, e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
        if phonenumbers.is_possible_number(number):
            possible.append(number)
    if not text.startswith("+") and MIN_SHORT_DIGITS <= len(digits) <= MAX_SHORT_DIGITS:
        return Phone(raw=raw, e164=digits)
    if possible:
        # A range newer than the library's metadata: possible by length, so keep it.
        return Phone(raw=raw, e164=phonenumbers.format_number(possible[0], phonenumbers.PhoneNumberFormat.E164))
    raise InvalidPhoneError("not a phone number")


def national(phone: str | None, region: str) -> str | None:
    """`+79101234567` -> `8 (910) 123-45-67` (the national form people dial); short numbers as they are."""
    if not phone:
        return None
    if not phone.startswith("+"):
        return phone
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return phone
    if phonenumbers.region_code_for_number(number) != region.upper():
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
