"""The base of the errors that are the user's to fix, importable from every layer.

It lives in the lowest package so that a space definition's, a checkpoint's, a profiler setting's
and a search's errors can all derive from it; :mod:`search_service.errors` re-exports it.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix (an option, a file, a setting, a budget); the message says what to change.

    ``gpnas`` prints the message of a ``UserError`` on one line and exits with status 2; any other
    exception is a bug and keeps its traceback. A ``ValueError`` so that callers that catch bad
    values catch it too.
    """
