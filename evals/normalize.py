"""English text normalisation for word error rate, in the spirit of Whisper's
EnglishTextNormalizer but small. Both reference and hypothesis go through the same steps:

    NFKC, lower case, accents dropped    "Lübeck" -> "lubeck"
    [bracketed] and <tagged> asides gone  (parentheses stay: LJSpeech reads them aloud)
    abbreviations and symbols             "Mr." -> "mister", "i.e." -> "that is", "5%" -> "five percent"
    digits to words                       "1,000" -> "one thousand", "2.5" -> "two point five",
                                          "21st" -> "twenty first", "1455" -> "fourteen fifty five"
    contractions                          "don't" -> "do not", other apostrophes dropped ("john's" -> "johns")
    hyphens and punctuation to spaces     "forty-two" -> "forty two"
    British to American spelling          "splendours" -> "splendors", "centre" -> "center"
    hesitations dropped                   "um", "uh", "hmm"

Numbers go to words, not words to digits, so a reference that spells out "fourteen fifty-five"
matches a hypothesis that writes "1455". Four-digit numbers from 1100 to 1999 are read as
years ("fifteen hundred", "nineteen oh five"); others as cardinals without "and".
"""
from __future__ import annotations

import re
import unicodedata

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
            "nine": "ninth", "twelve": "twelfth"}


def int_to_words(n: int) -> str:
    """Cardinal words, no "and": 1_200_005 -> "one million two hundred thousand five"."""
    if n < 0:
        return "minus " + int_to_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (" " + _ONES[ones] if ones else "")
    if n < 1000:
        head, rest, name = n // 100, n % 100, "hundred"
    else:
        value, name = next((v, s) for v, s in _SCALES if n >= v)
        head, rest = divmod(n, value)
    return f"{int_to_words(head)} {name}" + (" " + int_to_words(rest) if rest else "")


def ordinal_words(n: int) -> str:
    *head, last = int_to_words(n).split()
    last = _ORDINAL.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return " ".join([*head, last])


def year_words(n: int) -> str:
    """1100..1999 as spoken years: 1455 -> "fourteen fifty five", 1905 -> "nineteen oh five"."""
    century, rest = divmod(n, 100)
    tail = "hundred" if rest == 0 else f"oh {_ONES[rest]}" if rest < 10 else int_to_words(rest)
    return f"{int_to_words(century)} {tail}"


def number_words(digits: str, years: bool = True) -> str:
    """One run of digits; a leading zero or more than 15 digits is read digit by digit."""
    if (digits.startswith("0") and len(digits) > 1) or len(digits) > 15:
        return " ".join(_ONES[int(d)] for d in digits)
    n = int(digits)
    return year_words(n) if years and len(digits) == 4 and 1100 <= n <= 1999 else int_to_words(n)


def _plural(words: str) -> str:
    return words[:-1] + "ies" if words.endswith("y") else words + ("es" if words.endswith("x") else "s")


_ABBREVIATIONS = [(re.compile(p), r) for p, r in (
    (r"\be\.g\.", " for example "), (r"\bi\.e\.", " that is "), (r"\betc\b\.?", " et cetera "),
    (r"\bmr\b\.?", "mister"), (r"\bmrs\b\.?", "missus"), (r"\bms\b\.?", "miss"),
    (r"\bdr\b\.?", "doctor"), (r"\bprof\b\.", "professor"), (r"\bst\b\.", "saint"),
    (r"\bjr\b\.?", "junior"), (r"\bsr\b\.", "senior"), (r"\bvs\b\.?", "versus"),
    (r"&", " and "), (r"%", " percent "), (r"[$](\d[\d,.]*)", r" \1 dollars "),
    (r"£(\d[\d,.]*)", r" \1 pounds "), (r"€(\d[\d,.]*)", r" \1 euros "),
)]
_CONTRACTIONS = [(re.compile(p), r) for p, r in (
    (r"\bwon't\b", "will not"), (r"\bcan't\b", "can not"), (r"\bshan't\b", "shall not"),
    (r"\bain't\b", "is not"), (r"\blet's\b", "let us"), (r"n't\b", " not"), (r"'re\b", " are"),
    (r"'ll\b", " will"), (r"'ve\b", " have"), (r"'m\b", " am"), (r"'d\b", " would"),
)]
_NUMBERS = re.compile(r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+)|(st|nd|rd|th)\b|(s)\b)?")
_SPOKEN_AND = re.compile(  # "a hundred and five" -> "one hundred five", as "105" reads
    r"\b(hundred|thousand|million|billion) and (?=(%s)\b)" % "|".join(_ONES[1:] + _TENS[2:]))
_A_SCALE = re.compile(r"\ba (hundred|thousand|million|billion)\b")
_ASIDES = re.compile(r"\[[^\]]*\]|<[^>]*>")
_NOT_WORD = re.compile(r"[^\w']+|_")
_HESITATIONS = frozenset("hmm mm mmm mhm uh um umm ah er erm".split())



def _american_spellings() -> dict[str, str]:
    """British word forms -> American: colour(s/ed/ful) -> color..., centre -> center, organise -> organize."""
    table = {}
    for stem in ("arbour ardour armour behaviour candour clamour colour demeanour endeavour favour flavour "
                 "harbour honour humour labour neighbour odour parlour rancour rigour rumour saviour "
                 "savour splendour succour tumour valour vapour vigour").split():
        for suffix in ("", "s", "ed", "ing", "ful", "less", "able", "ite", "ites", "er", "ers", "hood"):
            table[stem + suffix] = stem[:-2] + "r" + suffix
    for stem in "centr theatr metr litr fibr calibr sombr spectr lustr sabr meagr".split():
        table |= {stem + "e": stem[:-1] + "er", stem + "es": stem[:-1] + "ers", stem + "ed": stem[:-1] + "ered"}
    for stem in ("organis realis recognis apologis emphasis criticis civilis characteris specialis "
                 "summaris memoris standardis analys paralys").split():
        for suffix in ("e", "es", "ed", "er", "ers", "ing", "ation", "ations"):
            table[stem + suffix] = stem[:-1] + "z" + suffix
    for word in ("travelled travelling traveller travellers cancelled cancelling labelled labelling "
                 "modelled modelling signalled levelled fuelled marvellous").split():
        table[word] = word.replace("ll", "l", 1)
    return table | {"grey": "gray", "greys": "grays", "programme": "program", "programmes": "programs",
                    "aluminium": "aluminum", "defence": "defense", "offence": "offense",
                    "licence": "license", "catalogue": "catalog", "jewellery": "jewelry"}


_AMERICAN = _american_spellings()


def _number(m: re.Match) -> str:
    whole, decimals, ordinal, plural = m.groups()
    if decimals:  # "1,250.50": no year reading, decimals digit by digit
        point = " ".join(_ONES[int(d)] for d in decimals)
        return f" {number_words(whole.replace(',', ''), years=False)} point {point} "
    if ordinal:
        return f" {ordinal_words(int(whole.replace(',', '')))} "
    words = number_words(whole.replace(",", ""), years="," not in whole)
    return f" {_plural(words) if plural else words} "


def _ascii_fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def normalize(text: str) -> str:
    """The normalised form of `text`: lower-case words separated by single spaces."""
    text = _ascii_fold(unicodedata.normalize("NFKC", text).lower())
    text = _ASIDES.sub(" ", text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'"))
    for pattern, replacement in _ABBREVIATIONS:
        text = pattern.sub(replacement, text)
    text = _NUMBERS.sub(_number, text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    text = _NOT_WORD.sub(" ", text).replace("'", "")
    text = _A_SCALE.sub(r"one \1", _SPOKEN_AND.sub(r"\1 ", text))
    return " ".join(_AMERICAN.get(w, w) for w in text.split() if w not in _HESITATIONS)
