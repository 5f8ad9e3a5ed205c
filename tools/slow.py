"""Deliberately slow tools that stand in for network and compute latency.

They sleep, then return deterministic values, so runs can show overlap
between model decoding and tool execution without any network access.
``fetch`` is async (trio); ``compute`` and ``lookup`` are plain sync
functions, which the runner moves to worker threads.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import trio

_TABLE = {
    "paris": "capital of France, population about 2.1 million",
    "tokyo": "capital of Japan, population about 14 million",
    "lima": "capital of Peru, population about 10 million",
    "oslo": "capital of Norway, population about 0.7 million",
    "nairobi": "capital of Kenya, population about 4.4 million",
    "trio": "a Python library for structured async concurrency",
    "asyncfc": "future-based asynchronous function calling",
}


async def fetch(url: str, delay: float = 0.5) -> dict:
    """Fetch a web page (simulated) and return a short summary of it.

    No network is used: the summary is derived from the URL, so the same
    URL always gives the same page.

    Args:
        url: Address of the page, e.g. "https://example.org/news".
        delay: Seconds the simulated download takes.

    Returns:
        A dict with the url, a title, a word count and a one-line summary.
    """
    await trio.sleep(delay)
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
    parts = urlsplit(url)
    words = [w for w in parts.path.replace("-", "/").replace("_", "/").split("/") if w]
    title = " ".join(words).title() or parts.netloc or url
    return {
        "url": url,
        "title": title,
        "words": 200 + int(digest[:4], 16) % 1800,
        "summary": f"A page on {parts.netloc or 'an unknown host'} about "
        f"{title.lower()} (id {digest[:8]}).",
    }


def compute(x: float, y: float = 1.0, delay: float = 0.3) -> float:
    """Combine two numbers the slow way: x * y + x.

    Args:
        x: First operand.
        y: Second operand.
        delay: Seconds the simulated computation takes.

    Returns:
        The value of x * y + x.
    """
    time.sleep(delay)
    return x * y + x


def lookup(key: str, delay: float = 0.4) -> str:
    """Look a key up in a small built-in reference table.

    Args:
        key: Entry to look up, case-insensitive; known keys are paris, tokyo,
            lima, oslo, nairobi, trio and asyncfc.
        delay: Seconds the simulated lookup takes.

    Returns:
        The entry's text, or a "not found" sentence naming the known keys.
    """
    time.sleep(delay)
    entry = _TABLE.get(key.strip().lower())
    if entry is None:
        return f"{key!r} not found; known keys: {', '.join(sorted(_TABLE))}"
    return entry
