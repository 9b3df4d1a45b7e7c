"""The error every command turns into one clear line and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: printed as ``mulfree: error: <message>``, exit status 2."""


def flag_error(exc: Exception) -> UsageError:
    """``exc`` (a parameter's ``ValueError``: ``"acc_bits must be ..."``) as a ``UsageError``
    naming the command-line flag: ``"--acc-bits must be ..."``. A parameter with an
    underscore is renamed wherever it appears (``"xnor codes are 1 bit per lane: a_bits must
    be 1"``); ``rows``, ``cols``, ``lanes`` and ``spad`` only at the start."""
    import re
    text = re.sub(r"^(rows|cols|lanes|spad)\b", r"--\1", str(exc))
    text = re.sub(r"(?<![\w-])([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b",
                  lambda m: "--" + m.group(1).replace("_", "-"), text)
    return UsageError(text)
