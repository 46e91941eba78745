"""Checks of user-supplied text shown to other people (names, descriptions)."""

# Bidirectional formatting characters: they reorder how text is displayed ("Trojan Source").
BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def refuse_bidi_controls(value: str) -> str:
    """The value unchanged, or ValueError if it holds a bidirectional control character."""
    found = sorted({f"U+{ord(char):04X}" for char in value if char in BIDI_CONTROLS})
    if found:
        raise ValueError(f"must not contain bidirectional control characters ({', '.join(found)})")
    return value
