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
    """A phone number as received (`raw`) and as stored and matched (`e164`)."""

    raw: str
    e164: str

    @property
    def digits(self) -> str:
        """E.164 without the `+`: the form the PBX sends and accepts."""
        return self.e164[1:]


@lru_cache(maxsize=4096)
def normalize_phone(raw: str, region: str = "RU") -> Phone:
    """Read `raw` as the PBX or a person writes it; raise InvalidPhoneError if it is no number.

    The PBX sends `79101234567` (E.164 without `+`), CSV rows carry `+7...`, people type
    `8 (910) 123-45-67`, and other tenants send national forms (`0...`). The tenant's region reads
    national forms; digits that only make sense as an international number are tried as one.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_RAW_LENGTH:
        raise InvalidPhoneError("not a phone number")
    candidates = [text]
    if not text.startswith("+"):
        digits = "".join(ch for ch in text if ch.isdigit())
        if digits:
            candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            return Phone(raw=raw, e164=e164)
    raise InvalidPhoneError("not a phone number")
