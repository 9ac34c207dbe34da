"""What a voice should say for a sentence written for the eye.

Both engines read text through espeak-ng's English rules (piper phonemizes with espeak-ng), and
those already say plain numbers, decimals, thousands, years, ordinals, "%", "e.g." and "Dr."
well. This fixes only what they were heard to get wrong (checked with `espeak-ng --ipa`):

    "[1]", "[2, 3]"     "one", "two three"      citation marks: dropped
    "**very**"          "asterisk asterisk"     markdown emphasis, code, headings, links
    "https://a.com/x"   letters and slashes     the site's name: "a dot com"
    "3:00 pm", "9:07"   "three zero zero"       "3 pm", "9 oh 7"
    "$5.99", "€20"      "dollar five point…"    "5 dollars 99 cents", "20 euros"
    "5–7", "#2", "~5"   "five seven", "hash"    "5 to 7", "number 2", "about 5"
    "😀"                "grinning face"         dropped

It also makes the text one line of printable characters: the piper engine speaks one stdin
line per utterance, so a newline inside a sentence would split it in two.
"""
from __future__ import annotations

import re
import unicodedata

_CITATION = re.compile(r"\[\^?\d{1,3}(?:\s*[,–-]\s*\d{1,3})*\]|【\d{1,3}】")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")          # [text](url) -> text
_CODE = re.compile(r"`+([^`]*)`+")
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1")
_LINE_MARK = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|[-*+•]\s+)", re.MULTILINE)
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b(\s*[ap]\.?m\.?\b)?", re.IGNORECASE)
_MONEY = re.compile(r"([$€£])\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
                    r"(?:\s+(thousand|million|billion|trillion)\b)?")
_RANGE = re.compile(r"(?<=\d)\s*[–—]\s*(?=\d)")        # an en or em dash between numbers
_NUMBER_SIGN = re.compile(r"#(?=\d)")
_ABOUT = re.compile(r"(?<![\w~])~(?=\d)")
_STRAY = re.compile(r"[*_`#\[\]{}|\\^]+")               # marks no sentence means to say

_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "€": ("euro", "euros", "cent", "cents"),
             "£": ("pound", "pounds", "penny", "pence")}


def speakable(text: str) -> str:
    """The words to speak for `text`, on one line; "" when nothing in it can be spoken."""
    text = _LINE_MARK.sub("", text)            # before whitespace is folded: needs line starts
    text = _URL.sub(lambda m: _site(m.group()), text)
    text = _LINK.sub(r"\1", text)
    text = _CITATION.sub("", text)
    text = _CODE.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _TIME.sub(_time, text)
    text = _MONEY.sub(_money, text)
    text = _RANGE.sub(" to ", text)
    text = _NUMBER_SIGN.sub("number ", text)
    text = _ABOUT.sub("about ", text)
    text = _STRAY.sub(" ", text)
    text = "".join(_spoken(c) for c in text)
    text = " ".join(text.split())              # every kind of line break and space
    text = re.sub(r"\s+([.,!?;:])", r"\1", text)   # "word [1]." left "word ."
    return text if any(c.isalnum() for c in text) else ""


def _site(url: str) -> str:
    """https://www.example.com/docs?id=3 -> "example dot com": the page path is noise."""
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.IGNORECASE)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0].rstrip(".,;")
    return " dot ".join(p for p in host.split(".") if p)


def _time(m: re.Match) -> str:
    hour, minute, half = int(m.group(1)), m.group(2), (m.group(3) or "").strip()
    if hour > 23 or int(minute) > 59:
        return m.group()                       # a ratio or a score, not a time
    suffix = " " + half.replace(".", "").lower() if half else ""
    if minute != "00":
        return f"{hour} {'oh ' + minute[1] if minute[0] == '0' else minute}{suffix}"
    if suffix:
        return f"{hour}{suffix}"
    if 1 <= hour <= 12:
        return f"{hour} o'clock"
    return "midnight" if hour == 0 else f"{hour} hundred"


def _money(m: re.Match) -> str:
    one, many, cent, cents = _CURRENCY[m.group(1)]
    whole, frac, scale = m.group(2), m.group(3), m.group(4)
    if scale or (frac and len(frac) != 2):    # "$1.5 million": espeak says the decimal
        return " ".join(w for w in (f"{whole}.{frac}" if frac else whole, scale, many) if w)
    unit = one if whole == "1" else many
    small = f"{int(frac)} {cent if frac == '01' else cents}" if frac and frac != "00" else ""
    if whole == "0" and small:
        return small
    return f"{whole} {unit} {small}".strip()


def _spoken(c: str) -> str:
    """A character as spoken: line breaks and controls become spaces, emoji go, and the
    invisible formatting marks (soft hyphens, joiners) go without splitting their word."""
    cat = unicodedata.category(c)
    if cat in ("Cc", "Zl", "Zp", "Co", "Cs"):
        return " "
    if cat == "Cf":
        return ""
    if cat in ("So", "Sk") and (ord(c) >= 0x1F000 or 0x2600 <= ord(c) <= 0x27BF):
        return " "
    return c
