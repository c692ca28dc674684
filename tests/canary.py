"""A harmless target for gadgets: a gadget that gets to run code calls :func:`fire`.

Attack payloads name ``tests.canary.fire`` (or a ``Canary`` instance) where a real attacker
would name ``os.system``; the attack tests assert that ``FIRED`` stays empty.
"""

from __future__ import annotations

FIRED: list[tuple[object, ...]] = []


def fire(*args: object) -> str:
    """Record that attacker-chosen code ran, with its arguments."""
    FIRED.append(args)
    return "fired"


class Canary:
    """A class whose construction and pickling both fire the canary."""

    def __init__(self, *args: object) -> None:
        fire("Canary.__init__", *args)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        fire("Canary.__reduce__")
        return (fire, ("Canary.__reduce__ result",))


def reset() -> None:
    """Forget earlier firings."""
    FIRED.clear()
