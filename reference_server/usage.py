"""Command-line plumbing every gearspec command shares: a bad command line is
one line on stderr and exit status 2, never argparse's usage dump or a traceback."""

from __future__ import annotations

import argparse


class UsageError(Exception):
    """A bad command line: the message is the one line the user sees."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)
