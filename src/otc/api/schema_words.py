"""msgspec's validation errors in words a trader reads: ``Expected `str` of length >= 1 - at `$.text```
becomes ``text must not be empty``. Whatever is not recognised is passed through unchanged."""

from __future__ import annotations

import re

_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Expected `str` of length >= 1 - at `\$\.(\w+)`"), "{0} must not be empty"),
    (
        re.compile(r"Expected `str` of length >= (\d+) - at `\$\.(\w+)`"),
        "{1} must be at least {0} characters",
    ),
    (re.compile(r"Expected `str` of length <= (\d+) - at `\$\.(\w+)`"), "{1} must be at most {0} characters"),
    (re.compile(r"Object missing required field `(\w+)`"), "{0} is required"),
    (re.compile(r"Object contains unknown field `(\w+)`"), "unknown field {0}"),
    (re.compile(r"Expected `(\w+)`, got `(\w+)` - at `\$\.(\w+)`"), "{2} must be a {0}, not a {1}"),
    (re.compile(r"Expected `(.+)` - at `\$\.(\w+)`"), "{1} must be {0}"),
]


def plain_schema_error(text: str) -> str:
    for pattern, words in _RULES:
        m = pattern.search(text)
        if m:
            return words.format(*m.groups())
    return text
