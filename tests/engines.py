"""The engines every end-to-end test runs on: our own runtime (when built) and wasmtime-py's component API."""

from __future__ import annotations

import importlib.util

ENGINES = ["reference"]
if importlib.util.find_spec("wasitls.component.fast") is not None:
    ENGINES.insert(0, "fast")
