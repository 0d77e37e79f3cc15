"""A server that ignores one option: ``ignore_option.py OPTION -- SERVER ARGS...``
runs SERVER with ARGS, less OPTION (and its value, for an option that takes one).
The catalog's option cases must fail on it (tests/test_options.py)."""

from __future__ import annotations

import os
import sys

#: gearmand's options that take a value, among those tests/test_options.py drops.
TAKES_VALUE = {"-w", "--worker-wakeup", "-j", "--job-retries", "--job-handle-prefix",
               "-q", "--queue-type", "-r", "--protocol"}


def without(option: str, args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = option in TAKES_VALUE
        else:
            kept.append(arg)
    return kept


if __name__ == "__main__":
    option, separator, *command = sys.argv[1:]
    assert separator == "--", __doc__
    os.execv(command[0], [command[0], *without(option, command[1:])])
