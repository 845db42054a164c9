"""The client of bench/ssl_download.py, the same file in a guest (`wasitls build`) and natively.

  ssl_client.py download HOST PORT PATH CA   http.client.HTTPSConnection GET, readinto a 1 MiB buffer
  ssl_client.py handshakes HOST PORT N CA    N connections: TCP connect, TLS handshake, close

CA "-": the default trust (in a guest: the host's, `wasitls run --ca-file`). Prints `key: value` lines; seconds are time.perf_counter() around the work (start-up excluded).
"""

import http.client
import socket
import ssl
import sys
import time


def download(host, port, path, ca):
    ctx = ssl.create_default_context(cafile=None if ca == "-" else ca)
    buf = bytearray(1 << 20)
    started = time.perf_counter()
    conn = http.client.HTTPSConnection(host, int(port), context=ctx)
    conn.connect()
    cipher = f"{conn.sock.version()} {conn.sock.cipher()[0]}"
    conn.request("GET", path)
    response = conn.getresponse()
    body = 0
    while n := response.readinto(buf):
        body += n
    seconds = time.perf_counter() - started
    print(f"status: {response.status}")
    print(f"body bytes: {body}")
    print(f"seconds: {seconds:.6f}")
    print(f"cipher: {cipher}", flush=True)
    conn.close()


def handshakes(host, port, count, ca):
    ctx = ssl.create_default_context(cafile=None if ca == "-" else ca)
    started = time.perf_counter()
    for _ in range(int(count)):
        with socket.create_connection((host, int(port))) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                pass
    seconds = time.perf_counter() - started
    print(f"handshakes: {count}")
    print(f"seconds: {seconds:.6f}", flush=True)


def main():
    mode, *args = sys.argv[1:]
    {"download": download, "handshakes": handshakes}[mode](*args)


if __name__ == "__main__":
    main()
