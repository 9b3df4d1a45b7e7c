"""The error every command turns into one clear line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: printed as ``mulfree: error: <message>``, exit status 2."""


def flag_error(exc: Exception) -> UsageError:
    """``exc`` (a parameter's ``ValueError``: ``"acc_bits must be ..."``) as a ``UsageError``
    naming the command-line flag: ``"--acc-bits must be ..."``."""
    import re
    text = re.sub(r"^([a-z][a-z0-9]*(?:_[a-z0-9]+)+|rows|cols|lanes|spad)\b",
                  lambda m: "--" + m.group(1).replace("_", "-"), str(exc))
    return UsageError(text)
