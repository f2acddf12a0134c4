"""Value conversions shared by field types and template functions: numbers, yes/no, dates,
phones, e-mail, text. Each takes plain values and raises ConversionError with a short
reason; the mapping stage names the field. Messages never quote the value: it is lead
data (PII) and ends up in events and logs.

Libraries do the hard parts: babel (locale-aware numbers), arrow (date tokens and loose
date parsing), zoneinfo (time zones), phonenumbers (libphonenumber's port),
email-validator (RFC 5322 syntax).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import arrow
import phonenumbers
from arrow.formatter import DateTimeFormatter
from babel import Locale, UnknownLocaleError
from babel.numbers import NumberFormatError, parse_decimal
from email_validator import EmailNotValidError, validate_email

from streams.errors import CourierError

# Bounds that keep one lead's mapping cheap whatever the template or the data says.
MAX_TEXT = 100_000  # characters in any string a template builds
MAX_MAGNITUDE = Decimal("1e30")  # numbers beyond this are refused, not computed
MAX_PARTS = 1_000  # parts from split()
_MIN_NUMBER = -MAX_MAGNITUDE

_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$").match
_GROUPED_NUMBER = re.compile(r"^[+-]?\d[\d.,'\u00a0\u202f ]*$")
_CURRENCY = "$€£¥"
TRUE_WORDS = frozenset({"yes", "y", "true", "t", "1", "on"})
FALSE_WORDS = frozenset({"no", "n", "false", "f", "0", "off"})
_EPOCH_MS_THRESHOLD = 100_000_000_000  # a larger epoch number is in milliseconds
_LOOSE_DATE_FORMATS = ["MM/DD/YYYY", "MM/DD/YYYY HH:mm", "MM/DD/YYYY HH:mm:ss", "YYYYMMDD"]
_DATE_FORMATTER = DateTimeFormatter()
PHONE_STYLES = {
    "E164": phonenumbers.PhoneNumberFormat.E164,
    "NATIONAL": phonenumbers.PhoneNumberFormat.NATIONAL,
    "INTERNATIONAL": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
}


class ConversionError(CourierError):
    """A value cannot be converted; the message says why, without the field's name."""


def joined(texts: list[str], separator: str = "") -> str:
    """``separator.join(texts)``, refused before it is built when it would be too long: a
    ``concat`` of a big field 500 times once built 900 MB only to refuse it."""
    size = sum(map(len, texts)) + len(separator) * max(len(texts) - 1, 0)
    if size > MAX_TEXT:
        raise ConversionError(f"text longer than {MAX_TEXT} characters")
    return separator.join(texts)


def check_text(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise ConversionError(f"text longer than {MAX_TEXT} characters")
    return text


def check_number(number: Decimal) -> Decimal:
    try:
        if _MIN_NUMBER <= number <= MAX_MAGNITUDE:  # false for ±Infinity; NaN raises
            return number
    except InvalidOperation:
        pass
    raise ConversionError("number out of range")


def to_text(value: Any) -> str:
    """How a value reads inside a template's text (missing → empty)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# What XML 1.0 cannot carry, even as a character reference (its Char production): C0
# controls but tab, newline and carriage return; lone surrogates; U+FFFE, U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_NOT_XML_KEPT_AS = {"\x0b": " ", "\x0c": " "}  # Excel's line break in a cell, a form feed


def xml_text(value: Any) -> str:
    """A value as XML text (``to_text``), less the characters XML cannot carry: a control
    character pasted into a form's field made the whole body ill-formed, and the recipient
    refused the lead for a character nobody could see (or its parser failed). A vertical
    tab or form feed, which separate words, becomes a space."""
    text = to_text(value)
    if _NOT_XML.search(text) is None:
        return text
    return _NOT_XML.sub(lambda found: _NOT_XML_KEPT_AS.get(found.group(), ""), text)


def to_number(value: Any, locale: str = "en_US") -> Decimal:
    """1250, 1250.5, "1,250.00", "$1,250", " 42 " → Decimal; anything else is refused."""
    kind = type(value)  # exact types: bool is not a number here, though it is an int
    if kind is str:
        if _PLAIN_NUMBER(value):  # the common case, "3000" or "12.5": on the hot path
            return check_number(Decimal(value))
        return _text_number(value, locale)
    if kind is Decimal:
        return check_number(value)
    if kind is int:
        return check_number(Decimal(value))
    if kind is float:
        return check_number(Decimal(repr(value)))
    raise ConversionError("not a number")


def _text_number(value: str, locale: str) -> Decimal:
    text = value.strip().lstrip(_CURRENCY).strip()
    try:
        if _PLAIN_NUMBER(text):
            return check_number(Decimal(text))
        # Only text that looks like a grouped number is worth babel's time.
        if _GROUPED_NUMBER.match(text):
            return check_number(parse_decimal(text, locale=locale, strict=True))
    except (NumberFormatError, InvalidOperation, ValueError):
        pass
    raise ConversionError("not a number")


def is_number(value: Any) -> bool:
    try:
        to_number(value)
    except ConversionError:
        return False
    return True


def json_number(number: Decimal) -> int | float:
    """Decimal → what JSON carries: an int when whole, else a float."""
    return int(number) if number == number.to_integral_value() else float(number)


def to_boolean(value: Any) -> bool:
    """yes/no, y/n, true/false, t/f, 1/0, on/off (any case) → bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ConversionError("not a yes/no value")


def time_zone(name: str) -> tzinfo:
    """Checked when a mapping compiles, so a typo stops start-up, not a lead."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConversionError(f"unknown time zone {name!r}") from None


def number_locale(name: str) -> str:
    """Checked when a mapping compiles: an unknown locale failed every lead whose number
    was grouped text ("1.250,00"), as our own error."""
    try:
        Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        raise ConversionError(f"unknown locale {name!r} (like en_US, de_DE, fr_FR)") from None
    return name


def phone_style(style: str) -> str:
    """Checked when a mapping compiles: a misspelt style (``E165``) was taken for a mask
    with no '#' and failed every lead as the lead's invalid data."""
    if style.upper() in PHONE_STYLES or style.upper() == "DIGITS" or "#" in style:
        return style
    raise ConversionError(
        f"unknown phone format {style!r}: one of {', '.join(PHONE_STYLES)}, DIGITS, or a "
        "mask of '#' like '(###) ###-####'"
    )


def phone_region(region: str) -> str:
    """Checked when a mapping compiles: with an unknown region every number written
    without its +country code was "not a phone number"."""
    if region.upper() in phonenumbers.SUPPORTED_REGIONS:
        return region
    raise ConversionError(f"unknown phone region {region!r} (a country code like US, GB, DE)")


def to_datetime(value: Any, assume: tzinfo = UTC) -> datetime:
    """ISO-8601 text, epoch seconds or milliseconds, or MM/DD/YYYY → an aware datetime.

    Text without an offset is read in ``assume`` (UTC unless the field says otherwise).
    """
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        seconds = float(value)
        if abs(seconds) >= _EPOCH_MS_THRESHOLD:
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            raise ConversionError("not a date") from None
    elif isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit() and len(text) >= 9:
            return to_datetime(int(text), assume)
        parsed = _parse_date_text(text)
    else:
        raise ConversionError("not a date")
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=assume)


@lru_cache(maxsize=4096)
def _parse_date_text(text: str) -> datetime:
    # Submissions arrive in bursts with equal timestamps; the cache makes repeats free.
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        pass
    try:
        return arrow.get(text, _LOOSE_DATE_FORMATS).datetime.replace(tzinfo=None)
    except (arrow.parser.ParserError, ValueError):
        raise ConversionError("not a date") from None


def format_date(value: Any, pattern: str, zone: tzinfo | None = None) -> str:
    """Format with arrow's tokens (YYYY, MM, DD, HH, mm, ss, Z, ...), in ``zone`` if given."""
    if isinstance(value, str):
        return _format_date_text(value, pattern, zone)
    return _format_moment(to_datetime(value), pattern, zone)


@lru_cache(maxsize=4096)
def _format_date_text(text: str, pattern: str, zone: tzinfo | None) -> str:
    # Leads arrive in bursts stamped with the same second: repeats cost a lookup.
    return _format_moment(to_datetime(text), pattern, zone)


def _format_moment(moment: datetime, pattern: str, zone: tzinfo | None) -> str:
    if zone is not None:
        moment = moment.astimezone(zone)
    return _DATE_FORMATTER.format(moment, pattern)


@lru_cache(maxsize=4096)
def _parse_phone(text: str, region: str) -> phonenumbers.PhoneNumber:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ConversionError("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise ConversionError("not a phone number")
    return number


def format_phone(value: Any, style: str = "E164", region: str = "US") -> str:
    """E164, NATIONAL, INTERNATIONAL, DIGITS, or a mask of '#' like ``(###) ###-####``."""
    if value is None or isinstance(value, bool):
        raise ConversionError("not a phone number")
    number = _parse_phone(to_text(value), region.upper())
    if style.upper() in PHONE_STYLES:
        return str(phonenumbers.format_number(number, PHONE_STYLES[style.upper()]))
    digits = phonenumbers.national_significant_number(number)
    if style.upper() == "DIGITS":
        return str(digits)
    return apply_mask(digits, style)


def apply_mask(digits: str, mask: str) -> str:
    """Fill each '#' of ``mask`` with the next digit; the counts must agree."""
    if mask.count("#") != len(digits):
        raise ConversionError(f"{len(digits)} digits do not fit the mask {mask!r}")
    filled = iter(digits)
    return "".join(next(filled) if ch == "#" else ch for ch in mask)


def is_valid_phone(value: Any, region: str = "US") -> bool:
    if not isinstance(value, str | int):
        return False
    try:
        number = _parse_phone(str(value), region.upper())
    except ConversionError:
        return False
    return bool(phonenumbers.is_valid_number(number))


# RFC 5321: no address is longer. Longer texts are refused before the validator (which
# took 230 ms on a large value) and never enter its cache: the cache stays ~1 MB.
EMAIL_MAX_LENGTH = 320


def is_valid_email(value: Any) -> bool:
    """Syntax only (RFC 5322 via email-validator): no DNS lookups on the delivery path."""
    return isinstance(value, str) and 0 < len(value) <= EMAIL_MAX_LENGTH and _email_syntax_ok(value)


@lru_cache(maxsize=4096)
def _email_syntax_ok(text: str) -> bool:
    try:
        validate_email(text, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
