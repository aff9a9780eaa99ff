"""What every headrecon command shares: one error handler and the ``--debug`` flag.

A command's ``main(argv)`` runs its body through :func:`run_command`: a problem with the user's input (a
``ValueError`` such as :class:`headrecon.data.errors.SceneError`, a missing or unreadable file (``OSError``), or
an exception marked ``user_facing = True`` such as a training that cannot continue) prints ``PROG: error: <file>: <problem>`` and exits with code 2; Ctrl-C exits with 130; anything else is
a bug and prints ``PROG: internal error`` with the exception. No traceback is printed unless ``--debug`` is given
(then the exception propagates).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

__all__ = ["add_debug_flag", "run_command", "USER_ERRORS"]

# errors that describe a problem with the input (their messages name the file): exit code 2; other exception
# types join by a class attribute ``user_facing = True``
USER_ERRORS = (ValueError, OSError)


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def run_command(prog: str, body: Callable[[], int], argv: Optional[Sequence[str]] = None) -> int:
    """Run ``body()`` (the command after argument parsing) with the shared error handling; returns the exit code.
    ``argv``: the command line, to see ``--debug``."""
    debug = "--debug" in (sys.argv[1:] if argv is None else list(argv))
    try:
        return body()
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, USER_ERRORS) or getattr(exc, "user_facing", False):
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        print(f"{prog}: internal error ({type(exc).__name__}: {exc}); run again with --debug for the traceback",
              file=sys.stderr)
        return 1
