"""What the bench tells the person running it, as it goes."""

from __future__ import annotations


def say(message: str) -> None:
    print(message, flush=True)
