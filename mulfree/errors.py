"""The error every command turns into one clear line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: printed as ``mulfree: error: <message>``, exit status 2."""
