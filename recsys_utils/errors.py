"""The project's exception types, one per failure family.

Every message names where the problem is (file, line, column, or parameter),
what was found, and what was expected.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import shlex
from collections.abc import Iterator
from typing import Any

__all__ = ["RecsysError", "RatingsFileError", "UnknownIDError", "ParameterError", "RunError", "positive_int",
           "setting", "cli_hints", "HINTS_ENV"]

#: Environment variable that makes :func:`setting` speak the command line's language. The CLI
#: sets it for its own process, and the notebook kernels papermill starts inherit it, so an
#: error raised inside a notebook of a ``python -m recsys_utils run`` says ``-p invalid drop``;
#: in Python, a notebook opened in JupyterLab or the CLI's tests' own process it is unset.
HINTS_ENV = "RECSYS_UTILS_HINTS"


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


def setting(name: str, value: Any, *, placeholder: bool = False) -> str:
    """How the reader of a message sets parameter ``name`` to ``value``.

    ``-p name value`` when the command line is running (:data:`HINTS_ENV` is ``cli``,
    quoted for a shell where needed), else the Python keyword ``name='value'`` (a notebook's
    parameter cell, a function call). With ``placeholder``, ``value`` is a word to replace
    (``COLUMN``) and is never quoted.

    >>> setting("invalid", "drop")
    "invalid='drop'"
    """
    if os.environ.get(HINTS_ENV) == "cli":
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"-p {name} {text if placeholder else shlex.quote(text)}"
    return f"{name}={value}" if placeholder else f"{name}={value!r}"


@contextlib.contextmanager
def cli_hints() -> Iterator[None]:
    """While inside, :func:`setting` (here and in child processes started meanwhile) gives the CLI form."""
    old = os.environ.get(HINTS_ENV)
    os.environ[HINTS_ENV] = "cli"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(HINTS_ENV, None)
        else:
            os.environ[HINTS_ENV] = old
