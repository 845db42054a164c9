"""The reliability suite (README "Reliability suite"): random misuse of wasitls:tls with fixed seeds,
hostile TLS peers, and resources over many connections. Runs bounded with the rest of the tests;
`WASITLS_RELIABILITY=full` runs the long version. Each test adds one pass line to the summary."""

from __future__ import annotations

import os

import pytest

from reliability_settings import FULL

_passed: list[str] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "reliability: the reliability suite (WASITLS_RELIABILITY=full for the long run)")


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def passed():
    """passed(line): the test's pass line, printed in the summary once the test has passed."""
    lines: list[str] = []
    yield lines.append
    _passed.extend(lines)


def pytest_terminal_summary(terminalreporter):
    if _passed:
        terminalreporter.section(f"reliability ({'full' if FULL else 'bounded'})")
        for line in _passed:
            terminalreporter.write_line(f"PASS {line}")
