"""The one error type of the study: a bad option value."""

from __future__ import annotations


class OptionError(Exception):
    """A bad value of a command-line option (or the matching keyword argument).

    The message starts with the option's name, e.g. ``"--layer: ..."``; the
    command line prints it as ``prog: error: message`` and exits with status 2.
    """
