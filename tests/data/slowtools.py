"""Small slow tools for the HTTP-path async tests."""

import trio


async def fetch(url: str, delay: float = 0.5) -> dict:
    """Pretend to download a page.

    Args:
        url: The page.
        delay: Seconds it takes.
    """
    await trio.sleep(delay)
    return {"url": url, "size": len(url)}


def lookup(key: str) -> str:
    """Look a key up.

    Args:
        key: What to look up.
    """
    return key.upper()
