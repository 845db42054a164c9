"""How long the reliability suite runs: bounded by default, long with WASITLS_RELIABILITY=full."""

import os

FULL = os.environ.get("WASITLS_RELIABILITY", "") == "full"


def scaled(bounded: int, full: int) -> int:
    return full if FULL else bounded
