"""The project's exception types, one per failure family.

Every message names where the problem is (file, line, column, or parameter),
what was found, and what was expected.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = ["RecsysError", "RatingsFileError", "UnknownIDError", "ParameterError", "RunError", "positive_int"]


class RecsysError(Exception):
    """Base class of every error this package raises on purpose."""


class RatingsFileError(RecsysError, ValueError):
    """A ratings file is missing, unreadable, or holds values we cannot use."""


class UnknownIDError(RecsysError, KeyError):
    """A user or product ID that the fitted vocabulary does not contain."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ParameterError(RecsysError, ValueError):
    """A run parameter has the wrong name, type or value."""


class RunError(RecsysError, RuntimeError):
    """A pipeline run or a run directory is incomplete or inconsistent."""


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` if it is a positive integer (NumPy integers too, bools not).

    Raises
    ------
    ParameterError
        Naming the parameter and the value found.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ParameterError(f"{name}={value!r}: expected a positive integer")
    return int(value)
