"""Deterministic randomness for the simulators: one seeded byte source, injectable.

Everything random in a simulated session (nonce, session credentials, RSA padding, cloud
message-ID start, TCP initial sequence numbers, ephemeral ports) is drawn from a
:class:`ByteSource`, so a fixed seed gives byte-identical output.
"""

from __future__ import annotations

import random

__all__ = ["ByteSource"]


class ByteSource:
    """Callable ``rng(n) -> n bytes`` backed by ``random.Random(seed)``.

    Not cryptographically secure, on purpose: simulations must be reproducible.
    ``ByteSource(None)`` seeds from the OS (non-reproducible).
    """

    __slots__ = ("_random", "seed")

    def __init__(self, seed: int | str | bytes | None = 0) -> None:
        self.seed = seed
        self._random = random.Random(seed)

    def __call__(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        return self._random.randbytes(n)

    def uint(self, low: int, high: int) -> int:
        """A random integer in ``low..high`` (both included)."""
        return self._random.randint(low, high)

    def fork(self, label: str) -> ByteSource:
        """An independent source derived from this one's seed and ``label``.

        Drawing from a fork never changes what this source draws next, so adding a random
        detail in one place does not shift every other random byte of a session.
        """
        if self.seed is None:
            return ByteSource(None)
        return ByteSource(f"{self.seed!r}/{label}")

    def __repr__(self) -> str:
        return f"ByteSource(seed={self.seed!r})"
