"""A tool that hands back what it is given, so a secret can travel through it."""


def echo(text: str) -> str:
    """Return the text unchanged.

    Args:
        text: Anything.
    """
    return text
