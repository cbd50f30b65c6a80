"""The one exception type for mistakes a user can fix (a bad key, path, value or file).

Any layer raises ``UserError("what is wrong and how to fix it")``; the command line prints it as a
single line ``sdegen: error: <message>`` on stderr and exits with status 2 (the full traceback only
with ``HYDRA_FULL_ERROR=1`` or ``verbose=true``).  Programming errors stay ordinary exceptions.
"""

from __future__ import annotations


class UserError(ValueError):
    """A user-fixable error; ``str(err)`` is the one line shown after ``sdegen: error:``."""

    exit_code = 2
