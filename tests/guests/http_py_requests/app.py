"""http_py_requests: `requests` in a guest, over wasi:http (requests-wasi-http's WasiHttpAdapter).

Usage: http_py_requests COMMAND URL [ARG] ...
  get URL          print status, content-type and the body's length and sha256
  post URL SIZE    POST SIZE bytes of the pattern (byte i is i % 251), print the reply
  stream URL       GET with stream=True, counting the bytes iter_content yields
  timeout URL      GET with a 0.3 s timeout
A failure prints `error <requests exception class>`.
"""

import hashlib

import requests
from wasi_http_adapter import wasi_session

# imported here so componentize-py bundles them (the adapter imports them by name)
import bindings
import bindings.imports.outgoing_handler
import bindings.imports.types
import bindings.types
from wit_world import exports
from wit_world.imports import environment

PATTERN = bytes(i % 251 for i in range(251))


class Run(exports.Run):
    def run(self) -> None:
        session = wasi_session(bindings)
        args = environment.get_arguments()[1:]
        i = 0
        while i < len(args):
            cmd, url = args[i], args[i + 1]
            i += 2
            try:
                if cmd == "get":
                    r = session.get(url, timeout=30)
                    body = r.content
                    print(f"get {r.status_code} {r.headers.get('content-type')} {len(body)} "
                          f"{hashlib.sha256(body).hexdigest()[:16]} history={[h.status_code for h in r.history]}")
                elif cmd == "post":
                    size = int(args[i]); i += 1
                    data = (PATTERN * (size // 251 + 1))[:size]
                    r = session.post(url, data=data, timeout=30)
                    print(f"post {r.status_code} {r.text.strip()}")
                elif cmd == "stream":
                    with session.get(url, stream=True, timeout=30) as r:
                        total = sum(len(chunk) for chunk in r.iter_content(1 << 16))
                    print(f"stream {r.status_code} {total}")
                elif cmd == "timeout":
                    r = session.get(url, timeout=0.3)
                    print(f"timeout {r.status_code}")
                else:
                    print(f"unknown command {cmd}")
            except requests.RequestException as e:
                print(f"error {type(e).__name__}")
