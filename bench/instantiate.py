"""Instantiating a loaded component: walking its definitions against replaying the recorded plan.

    python bench/instantiate.py [--runs 300]

`wasitls serve` makes a fresh instance per request. For the test handlers (tests/guests/http_py_handler,
and http_js_handler when jco is installed) this times, in one process, the instantiations of one loaded
component: each walked (as the first always is) and each replayed from the plan the first recorded
(component/plan.py), each followed by `close()`. Medians, interleaved, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wasitls.devtools import build_js_guest, build_test_guest, find_jco  # noqa: E402
from wasitls.host import Host  # noqa: E402


def instantiate_once(host: Host, loaded, plan) -> float:
    loaded.plan = plan  # False: walk; a Plan: replay it
    ctx = host._ctx(["handler"])
    started = time.perf_counter()
    instance = loaded.instantiate(host.linker(ctx))
    took = time.perf_counter() - started
    ctx.lifetime.end()
    instance.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()
    handlers = {"python": build_test_guest("http_py_handler")}
    if find_jco() is not None:
        handlers["js"] = build_js_guest("http_js_handler", disable=(), wasi_version="0.2.10")
    print(f"instantiating a loaded handler, median of {args.runs} each, interleaved")
    for name, wasm in handlers.items():
        host = Host(stdin=b"")
        loaded = host.load(str(wasm))
        loaded.plan = None
        instantiate_once(host, loaded, None)  # records the plan
        plan = loaded.plan
        if not plan:
            print(f"  {name:6} no plan could be recorded: every instance is walked")
            continue
        walked, replayed = [], []
        for _ in range(args.runs):
            walked.append(instantiate_once(host, loaded, False))
            replayed.append(instantiate_once(host, loaded, plan))
        w, r = statistics.median(walked) * 1e3, statistics.median(replayed) * 1e3
        print(f"  {name:6} walked {w:6.2f} ms  replayed {r:6.2f} ms  {w / r:5.2f}x faster")


if __name__ == "__main__":
    main()
