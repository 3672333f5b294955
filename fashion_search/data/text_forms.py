"""One form for the text of metadata, wherever it comes from and whatever it is compared with.

Names and text values are kept in Unicode's NFKC form, so the NFC and NFD spellings of "café"
are one text and full-width ``ＧＥＮＤＥＲ`` is ``GENDER``; two names are one name when their NFKC
forms differ only in case (:func:`fold`). A column name must hold a letter or a digit and may not
pass for another name: letters of two scripts (Latin ``g`` with a Cyrillic ``е``) are refused, as
are Latin letters outside the alphabets' blocks (IPA's ``ɡ``). A value is a number only when it
is a plain decimal (:data:`PLAIN_NUMBER`): ``Infinity``, ``1e3``, ``+7``, `` 5 `` and 401 digits
are text.
"""
from __future__ import annotations

import re
import unicodedata

# Plain decimals: a minus sign, at most 15 digits (exact in a float64), at most 15 after the point.
PLAIN_NUMBER = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,15})?")
PLAIN_LIMIT = 1e15  # numbers at least this large have more digits than PLAIN_NUMBER allows
# Scripts written together with Latin and with each other (Unicode TS 39's "highly restrictive").
EAST_ASIAN = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO"})
# Latin letters of alphabets: Basic Latin to Latin Extended-B, and Latin Extended Additional.
ALPHABET_LATIN = ((0x41, 0x24F), (0x1E00, 0x1EFF))
CASED = ("Lu", "Ll", "Lt")


def normal(text: str) -> str:
    """``text`` in Unicode's NFKC form."""
    return unicodedata.normalize("NFKC", text)


def fold(name: str) -> str:
    """What makes two names one: their NFKC forms, case folded."""
    return normal(normal(name).casefold())


def is_plain_number(text: str) -> bool:
    """Whether ``text`` is a plain decimal number (:data:`PLAIN_NUMBER`, nothing around it)."""
    return PLAIN_NUMBER.fullmatch(text) is not None


def _script(letter: str) -> str:
    """A letter's script, as the first word of its Unicode name (LATIN, CYRILLIC, CJK...)."""
    return unicodedata.name(letter, "UNNAMED").split()[0]


def _odd_latin(letter: str) -> bool:
    """A Latin letter that is not one of an alphabet's (IPA, phonetic, clicks): it passes for another."""
    code = ord(letter)
    return unicodedata.category(letter) not in CASED or not any(low <= code <= high for low, high in ALPHABET_LATIN)


def name_problem(name: str) -> str | None:
    """Why an NFKC column name could pass for another or be none at all, or None."""
    if not any(c.isalnum() for c in name):
        return "has no letter or digit"
    letters = [c for c in name if unicodedata.category(c) in (*CASED, "Lo")]
    odd = next((c for c in letters if _script(c) == "LATIN" and _odd_latin(c)), None)
    if odd:
        return f"holds '{odd}' ({unicodedata.name(odd)}), a letter that passes for another"
    scripts = sorted({_script(c) for c in letters} - EAST_ASIAN, key=lambda s: (s != "LATIN", s))
    if len(scripts) > 1:
        return f"mixes {' and '.join(s.title() for s in scripts)} letters, so it could pass for another name"
    return None
