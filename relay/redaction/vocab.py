"""The words the redaction scanner knows: spoken digits, fillers, cue phrases, masks.

Tables only; the scanner in `scan.py` reads them. Every word is lower case.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class EntityKind(StrEnum):
    """What a masked span was. The value is the `entity` label of the redaction counter."""

    CARD = "card"
    SECURITY_CODE = "security_code"
    EXPIRY = "expiry"
    SSN = "ssn"
    ACCOUNT = "account"
    ROUTING = "routing"
    PHONE = "phone"
    EMAIL = "email"


MASKS: Final[dict[EntityKind, str]] = {
    EntityKind.CARD: "[card]",
    EntityKind.SECURITY_CODE: "[security code]",
    EntityKind.EXPIRY: "[expiry]",
    EntityKind.SSN: "[ssn]",
    EntityKind.ACCOUNT: "[account number]",
    EntityKind.ROUTING: "[routing number]",
    EntityKind.PHONE: "[phone]",
    EntityKind.EMAIL: "[email]",
}
CARD_ENDING_MASK: Final = "[card ending {last4}]"

# One spoken digit each.
UNITS: Final[dict[str, str]] = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
}
# Words that are digits only beside other digits: "oh", "o" and "won" need one digit neighbour
# ("four oh one"); "for", "to" and "ate" are common words in front of and after numbers ("to
# 5100 ..."), so they need digits on each side ("four one one for one").
WEAK_ONE_SIDE: Final[dict[str, str]] = {"oh": "0", "o": "0", "won": "1"}
WEAK_BOTH_SIDES: Final[dict[str, str]] = {"for": "4", "fore": "4", "to": "2", "too": "2", "ate": "8"}
TEENS: Final[dict[str, str]] = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
TENS: Final[dict[str, str]] = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fourty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
REPEATS: Final[dict[str, int]] = {"double": 2, "triple": 3}
# "forty one hundred" is 4100; "two thousand twenty seven" is 2027.
SCALES: Final[dict[str, int]] = {"hundred": 2, "thousand": 3}

# Said between the digits of one number; a group boundary, never the end of the number.
FILLERS: Final[frozenset[str]] = frozenset(
    {"uh", "uhh", "um", "umm", "uhm", "er", "erm", "ah", "ahh", "hmm", "hm", "mm", "mhm", "like", "sorry", "wait"}
)
FILLER_PHRASES: Final[tuple[tuple[str, ...], ...]] = (
    ("let", "me", "see"),
    ("let's", "see"),
    ("let", "me", "check"),
    ("hold", "on"),
    ("i", "mean"),
    ("you", "know"),
)
SEPARATOR_WORDS: Final[frozenset[str]] = frozenset({"dash", "hyphen", "slash"})
SEPARATOR_CHARS: Final[frozenset[str]] = frozenset("-,./()+–—")
CURRENCY_CHARS: Final[frozenset[str]] = frozenset("$£€¥")
# A number followed by one of these is an amount or a quantity, not an identifier.
UNIT_WORDS: Final[frozenset[str]] = frozenset(
    {
        "dollar",
        "dollars",
        "bucks",
        "cent",
        "cents",
        "percent",
        "pound",
        "pounds",
        "euro",
        "euros",
        "usd",
        "grand",
        "k",
        "minute",
        "minutes",
        "hour",
        "hours",
        "day",
        "days",
        "week",
        "weeks",
        "month",
        "months",
        "year",
        "years",
        "times",
        "item",
        "items",
        "piece",
        "pieces",
        "people",
        "miles",
        "gb",
        "mb",
        "lbs",
        "ounces",
        "oz",
        "feet",
        "inches",
        "am",
        "pm",
        "o'clock",
        "points",
        "units",
        "boxes",
    }
)
MONTHS: Final[dict[str, int]] = {
    "january": 1,
    "jan": 1,
    "february": 2,
    "feb": 2,
    "march": 3,
    "april": 4,
    "apr": 4,
    "may": 5,
    "june": 6,
    "jun": 6,
    "july": 7,
    "jul": 7,
    "august": 8,
    "aug": 8,
    "september": 9,
    "sept": 9,
    "sep": 9,
    "october": 10,
    "oct": 10,
    "november": 11,
    "nov": 11,
    "december": 12,
    "dec": 12,
}

# A cue names the number near it. NEGATIVE cues name numbers that are not entities (order and
# tracking numbers, balances, extensions); the nearest cue decides.
NEGATIVE: Final = "negative"
NO_CUE: Final = "none"
STRONG_NEGATIVE: Final = "strong_negative"  # not a card even when it passes Luhn
_CUE_LIST: Final[tuple[tuple[str, str], ...]] = (
    (EntityKind.CARD, "card"),
    (EntityKind.CARD, "cards"),
    (EntityKind.CARD, "credit"),
    (EntityKind.CARD, "debit"),
    (EntityKind.CARD, "visa"),
    (EntityKind.CARD, "mastercard"),
    (EntityKind.CARD, "master card"),
    (EntityKind.CARD, "amex"),
    (EntityKind.CARD, "american express"),
    (EntityKind.CARD, "discover"),
    (EntityKind.CARD, "cc"),
    (EntityKind.CARD, "pan"),
    (EntityKind.CARD, "long number"),
    (EntityKind.SECURITY_CODE, "cvv"),
    (EntityKind.SECURITY_CODE, "cvv2"),
    (EntityKind.SECURITY_CODE, "cvc"),
    (EntityKind.SECURITY_CODE, "cvc2"),
    (EntityKind.SECURITY_CODE, "cvn"),
    (EntityKind.SECURITY_CODE, "cid"),
    (EntityKind.SECURITY_CODE, "csc"),
    (EntityKind.SECURITY_CODE, "c v v"),
    (EntityKind.SECURITY_CODE, "security code"),
    (EntityKind.SECURITY_CODE, "security number"),
    (EntityKind.SECURITY_CODE, "verification code"),
    (EntityKind.SECURITY_CODE, "verification value"),
    (EntityKind.SECURITY_CODE, "card verification"),
    (EntityKind.SECURITY_CODE, "three digit code"),
    (EntityKind.SECURITY_CODE, "four digit code"),
    (EntityKind.SECURITY_CODE, "three digits"),
    (EntityKind.SECURITY_CODE, "on the back"),
    (EntityKind.EXPIRY, "expiration"),
    (EntityKind.EXPIRY, "expiry"),
    (EntityKind.EXPIRY, "expires"),
    (EntityKind.EXPIRY, "expire"),
    (EntityKind.EXPIRY, "expiring"),
    (EntityKind.EXPIRY, "expired"),
    (EntityKind.EXPIRY, "exp"),
    (EntityKind.EXPIRY, "valid thru"),
    (EntityKind.EXPIRY, "valid through"),
    (EntityKind.EXPIRY, "valid until"),
    (EntityKind.EXPIRY, "good thru"),
    (EntityKind.EXPIRY, "good through"),
    (EntityKind.SSN, "social"),
    (EntityKind.SSN, "ssn"),
    (EntityKind.SSN, "s s n"),
    (EntityKind.SSN, "social security"),
    (EntityKind.SSN, "tax id"),
    (EntityKind.SSN, "taxpayer"),
    (EntityKind.SSN, "itin"),
    (EntityKind.ACCOUNT, "account"),
    (EntityKind.ACCOUNT, "acct"),
    (EntityKind.ACCOUNT, "checking"),
    (EntityKind.ACCOUNT, "savings"),
    (EntityKind.ROUTING, "routing"),
    (EntityKind.ROUTING, "aba"),
    (EntityKind.ROUTING, "transit number"),
    (EntityKind.PHONE, "phone"),
    (EntityKind.PHONE, "cell"),
    (EntityKind.PHONE, "cellphone"),
    (EntityKind.PHONE, "mobile"),
    (EntityKind.PHONE, "telephone"),
    (EntityKind.PHONE, "landline"),
    (EntityKind.PHONE, "fax"),
    (EntityKind.PHONE, "area code"),
    (EntityKind.PHONE, "call me"),
    (EntityKind.PHONE, "call back"),
    (EntityKind.PHONE, "callback"),
    (EntityKind.PHONE, "reach me"),
    (EntityKind.PHONE, "text me"),
    (EntityKind.PHONE, "contact number"),
    (NEGATIVE, "order"),
    (NEGATIVE, "orders"),
    (STRONG_NEGATIVE, "tracking"),
    (NEGATIVE, "confirmation"),
    (NEGATIVE, "reference"),
    (NEGATIVE, "ref"),
    (NEGATIVE, "ticket"),
    (NEGATIVE, "case number"),
    (NEGATIVE, "case id"),
    (NEGATIVE, "invoice"),
    (NEGATIVE, "receipt"),
    (NEGATIVE, "claim"),
    (NEGATIVE, "policy"),
    (NEGATIVE, "member"),
    (NEGATIVE, "membership"),
    (NEGATIVE, "loyalty"),
    (NEGATIVE, "rewards"),
    (STRONG_NEGATIVE, "serial"),
    (NEGATIVE, "model"),
    (NEGATIVE, "part number"),
    (NEGATIVE, "sku"),
    (NEGATIVE, "item"),
    (STRONG_NEGATIVE, "imei"),
    (NEGATIVE, "zip"),
    (NEGATIVE, "postal"),
    (NEGATIVE, "extension"),
    (NEGATIVE, "ext"),
    (NEGATIVE, "room"),
    (NEGATIVE, "suite"),
    (NEGATIVE, "apartment"),
    (NEGATIVE, "flight"),
    (NEGATIVE, "booking"),
    (NEGATIVE, "reservation"),
    (NEGATIVE, "balance"),
    (NEGATIVE, "total"),
    (NEGATIVE, "amount"),
    (NEGATIVE, "price"),
    (NEGATIVE, "charged"),
    (NEGATIVE, "paid"),
    (NEGATIVE, "refund"),
    (NEGATIVE, "limit"),
    (NEGATIVE, "version"),
    (NEGATIVE, "pin"),
    (NEGATIVE, "passcode"),
    (NEGATIVE, "one time code"),
    (NEGATIVE, "otp"),
    (NEGATIVE, "store"),
    (NEGATIVE, "street"),
    (NEGATIVE, "avenue"),
    (NEGATIVE, "route"),
    (NEGATIVE, "highway"),
    (NEGATIVE, "interstate"),
    # Phrases that only look like cues; matched first (longest wins) so they cue nothing.
    (NO_CUE, "in order to"),
    (NO_CUE, "in order for"),
    (NO_CUE, "social media"),
    (NO_CUE, "social worker"),
)
# first word -> (the phrase's words, kind); longest phrases first so "social security" wins.
CUES: Final[dict[str, tuple[tuple[tuple[str, ...], str], ...]]] = {}
for _kind, _phrase in sorted(_CUE_LIST, key=lambda kp: -len(kp[1].split())):
    _words = tuple(_phrase.split())
    CUES[_words[0]] = (*CUES.get(_words[0], ()), (_words, str(_kind)))
CUE_MAX_WORDS: Final = max(len(p.split()) for _, p in _CUE_LIST)
# These name the number after them only ("555 1234 extension 12": the extension is 12).
FORWARD_ONLY: Final[frozenset[str]] = frozenset({"extension", "ext", "room", "suite", "apartment"})

# Spoken e-mail addresses: "jane dot doe at gmail dot com".
EMAIL_TLDS: Final[frozenset[str]] = frozenset(
    {"com", "net", "org", "edu", "gov", "io", "co", "us", "uk", "ca", "info", "biz", "me", "mail", "ai", "de"}
)
EMAIL_DOTS: Final[frozenset[str]] = frozenset({"dot", "."})
EMAIL_JOINERS: Final[frozenset[str]] = frozenset({"dot", ".", "underscore", "_", "dash", "-", "hyphen", "plus"})
EMAIL_STOPS: Final[frozenset[str]] = frozenset(
    {
        "is",
        "it's",
        "its",
        "it",
        "my",
        "email",
        "e-mail",
        "mail",
        "address",
        "the",
        "was",
        "at",
        "me",
        "to",
        "send",
        "that's",
        "use",
        "try",
        "and",
        "or",
        "e",
        "her",
        "his",
        "their",
        "our",
        "your",
    }
)
