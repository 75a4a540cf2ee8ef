"""Phone numbers as the PBX sends them, read into E.164 so one client is one key."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

# phonenumbers refuses longer input itself; checking first keeps hostile bodies cheap.
_MAX_RAW_LENGTH = 64


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


# Longer digit strings that are no valid number anywhere are refused rather than stored as keys.
_MAX_SHORT_DIGITS = 8
_SEPARATORS = frozenset(" -().")


@lru_cache(maxsize=4096)
def normalize_phone(raw: str, region: str = "RU") -> Phone:
    """Read `raw` as the PBX or a person writes it; raise InvalidPhoneError if it is no number.

    The PBX sends `79101234567` (E.164 without `+`), CSV rows carry `+7...`, people type
    `8 (910) 123-45-67`, and other tenants send national forms (`0...`). The tenant's region reads
    national forms; digits that only make sense as an international number are tried as one. A
    valid number wins over a merely possible one; short numbers (`112`, `708`) are kept as digits.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_RAW_LENGTH:
        raise InvalidPhoneError("not a phone number")
    digits = "".join(ch for ch in text if ch.isdigit())
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
    only_digits = digits and all(ch.isdigit() or ch in _SEPARATORS for ch in text)
    if only_digits and 2 <= len(digits) <= _MAX_SHORT_DIGITS:
        return Phone(raw=raw, e164=digits)
    if possible:
        # A range newer than the library's metadata: possible by length, so keep it.
        return Phone(raw=raw, e164=phonenumbers.format_number(possible[0], phonenumbers.PhoneNumberFormat.E164))
    raise InvalidPhoneError("not a phone number")
