"""The backends (`--engine`) every end-to-end test runs on: our own runtime and wasmtime-py's component API."""

from __future__ import annotations

ENGINES = ["fast", "reference"]
