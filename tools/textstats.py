"""Text statistics: small, fast, side-effect-free tools."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_WORD = re.compile(r"[A-Za-z0-9']+")


def word_count(path: str) -> dict:
    """Count the lines, words and characters of a UTF-8 text file.

    Args:
        path: File to read, relative to the runner's working directory.

    Returns:
        A dict with the path and its line, word and character counts.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return {
        "path": path,
        "lines": len(text.splitlines()),
        "words": len(text.split()),
        "chars": len(text),
    }


def top_words(text: str, n: int = 5) -> list:
    """List the most frequent words of a text, case-insensitively.

    Args:
        text: The text to analyse.
        n: How many words to return, most frequent first.

    Returns:
        A list of {"word", "count"} objects; ties keep first-seen order.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    counts = Counter(w.lower() for w in _WORD.findall(text))
    return [{"word": w, "count": c} for w, c in counts.most_common(n)]
