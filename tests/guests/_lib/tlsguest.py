"""Helpers shared by the guests of wasitls:tls@0.1.0 (the full draft TLS API).

Every guest world using this module imports `wasitls:tls/tls@0.1.0` and
`wasitls:tls/identities@0.1.0` beside `wasi:cli/imports@0.2.9`.

Facts are printed as `key=value` lines so the tests can parse them:
identities as `sha256:<hex of the leaf DER>`, versions and cipher suites as `0x%04x`,
ALPN ids as text (`none` when absent).
"""

from __future__ import annotations

import base64
import hashlib
import sys

from componentize_py_types import Err
from wit_world.imports import exit as wasi_exit
from wit_world.imports import identities, network, tcp, tcp_create_socket, instance_network, tls

import guestnet
from guestnet import wait


class Failed(Exception):
    """A future resolved with an error (the handshake failed) or was read twice."""


def say(*parts) -> None:
    print(*parts, flush=True)


def say_long(text: str) -> None:
    """Print a long text in pieces: componentize-py's stdout keeps only the first 64 KiB of one write."""
    for start in range(0, len(text), 8192):
        sys.stdout.write(text[start : start + 8192])
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def fail(message: str) -> None:
    say(message)
    wasi_exit.exit(Err(None))


# -- futures ----------------------------------------------------------------------------------

def await_future(fut):
    """Block until `fut` resolves; its value, or Failed. The future is dropped."""
    with fut:
        while (got := fut.get()) is None:
            wait(fut.subscribe())
    if isinstance(got, Err):
        raise Failed("future read twice")
    if isinstance(got.value, Err):
        raise Failed("handshake failed")
    return got.value.value


def describe_get(got) -> str:
    """A future's `get` result by name: pending, ok, err (handshake failed) or consumed."""
    if got is None:
        return "pending"
    if isinstance(got, Err):
        return "consumed"
    if isinstance(got.value, Err):
        return "err"
    return "ok"


def poll_until_ready(fut) -> None:
    while not _ready(fut):
        wait(fut.subscribe())


def _ready(fut) -> bool:
    with fut.subscribe() as p:
        return p.ready()


# -- certificates -----------------------------------------------------------------------------

def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """(label, der) of each PEM block in data."""
    out = []
    text = data.decode("ascii", "replace")
    pos = 0
    while (start := text.find("-----BEGIN ", pos)) >= 0:
        label_end = text.index("-----", start + 11)
        label = text[start + 11 : label_end]
        end = text.index(f"-----END {label}-----", label_end)
        body = "".join(line for line in text[label_end + 5 : end].splitlines() if ":" not in line)
        out.append((label, base64.b64decode(body)))
        pos = end + len(label) + 14
    return out


def pem_block_texts(data: bytes) -> list[bytes]:
    """Each PEM block of data, still in PEM form."""
    text = data.decode("ascii", "replace")
    out = []
    pos = 0
    while (start := text.find("-----BEGIN ", pos)) >= 0:
        label_end = text.index("-----", start + 11)
        label = text[start + 11 : label_end]
        end = text.index(f"-----END {label}-----", label_end) + len(f"-----END {label}-----")
        out.append(text[start:end].encode() + b"\n")
        pos = end
    return out


def _der(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at pos."""
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    return tag, pos, pos + length


_ATTR_NAMES = {"550403": "CN", "55040a": "O", "55040b": "OU", "550406": "C"}


def cert_subject(der: bytes) -> str:
    """The subject of a DER certificate as `CN=..,O=..`, attributes in certificate order."""
    _, start, _ = _der(der, 0)  # Certificate
    _, pos, _ = _der(der, start)  # TBSCertificate
    tag, _, end = _der(der, pos)
    if tag == 0xA0:  # [0] version
        pos = end
    for _ in range(4):  # serial, signature, issuer, validity
        pos = _der(der, pos)[2]
    _, pos, subject_end = _der(der, pos)
    parts = []
    while pos < subject_end:
        _, set_pos, set_end = _der(der, pos)
        while set_pos < set_end:
            _, attr_pos, attr_end = _der(der, set_pos)
            _, oid_start, oid_end = _der(der, attr_pos)
            _, value_start, value_end = _der(der, oid_end)
            oid = der[oid_start:oid_end].hex()
            value = der[value_start:value_end].decode("utf-8", "replace")
            parts.append(f"{_ATTR_NAMES.get(oid, oid)}={value}")
            set_pos = attr_end
        pos = set_end
    return ",".join(parts)


def fingerprint(der: bytes) -> str:
    return "sha256:" + hashlib.sha256(der).hexdigest()


def describe_public(identity) -> str:
    """`sha256:<leaf> chain=<n> subject=<subject of the leaf>`, or `none`."""
    if identity is None:
        return "none"
    with identity:
        chain = identity.export_x509_chain()
    if not chain:
        return "empty-chain"
    return f"{fingerprint(chain[0])} chain={len(chain)} subject={cert_subject(chain[0])}"


def describe_private(identity) -> str:
    if identity is None:
        return "none"
    with identity:
        return describe_public(identity.public_identity())


def leaf_of(identity) -> str:
    """Just the leaf's fingerprint of a private identity (borrowed, not dropped)."""
    with identity.public_identity() as public:
        return fingerprint(public.export_x509_chain()[0])


# -- identities -------------------------------------------------------------------------------

def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_identity(spec: str):
    """An identity by spec; raises Err when the host refuses it, Failed when a host name is unknown.

    host:NAME                   identities.get(NAME), held by the host
    file:KEY,CERT               private-identity.parse(KEY bytes, chain as DER certificates)
    pem:KEY,CERT                the same with each certificate of the chain as its PEM block
    raw:KEY,CHAIN               the chain file's bytes as the one element of the chain, as they are
    enc:KEY,CERT,PASSPHRASE     private-identity.parse-encrypted
    """
    kind, _, rest = spec.partition(":")
    if kind == "host":
        found = identities.get(rest)
        if found is None:
            raise Failed(f"no host identity named {rest}")
        return found
    parts = rest.split(",")
    key, chain_pem = read_file(parts[0]), read_file(parts[1])
    if kind == "raw":
        return tls.PrivateIdentity.parse(key, [chain_pem])
    if kind == "pem":
        return tls.PrivateIdentity.parse(key, pem_block_texts(chain_pem))
    chain = [der for label, der in pem_blocks(chain_pem) if label == "CERTIFICATE"]
    if kind == "file":
        return tls.PrivateIdentity.parse(key, chain)
    if kind == "enc":
        return tls.PrivateIdentity.parse_encrypted(key, chain, parts[2])
    raise ValueError(f"unknown identity spec {spec}")


# -- facts ------------------------------------------------------------------------------------

def fmt_alpn(alpn) -> str:
    return "none" if alpn is None else bytes(alpn).decode("ascii", "backslashreplace")


def fmt_u16(value) -> str:
    return "none" if value is None else f"0x{value:04x}"


def print_facts(conn, prefix: str = "") -> None:
    """The six facts of a client-connection or server-connection, in the seed's order."""
    client_side = isinstance(conn, tls.ClientConnection)
    say(f"{prefix}server-name={conn.server_name() or 'none'}")
    say(f"{prefix}alpn-id={fmt_alpn(conn.alpn_id())}")
    if client_side:
        say(f"{prefix}client-identity={describe_private(conn.client_identity())}")
        say(f"{prefix}server-identity={describe_public(conn.server_identity())}")
    else:
        say(f"{prefix}client-identity={describe_public(conn.client_identity())}")
        say(f"{prefix}server-identity={describe_private(conn.server_identity())}")
    say(f"{prefix}protocol-version={fmt_u16(conn.protocol_version())}")
    say(f"{prefix}cipher-suite={fmt_u16(conn.cipher_suite())}")


# -- sockets and streams ----------------------------------------------------------------------

def listen(port: int):
    """A TCP socket listening on 127.0.0.1:port; prints `listening on 127.0.0.1:<port>`."""
    net = instance_network.instance_network()
    sock = tcp_create_socket.create_tcp_socket(network.IpAddressFamily.IPV4)
    sock.start_bind(net, guestnet.sockaddr(network.IpAddress_Ipv4((127, 0, 0, 1)), port))
    sock.finish_bind()
    sock.start_listen()
    sock.finish_listen()
    say(f"listening on {guestnet.fmt_sockaddr(sock.local_address())}")
    return sock


def accept(sock):
    """(client socket, input, output), waiting for a connection."""
    while True:
        try:
            return sock.accept()
        except Err as e:
            if e.value != network.ErrorCode.WOULD_BLOCK:
                raise
            wait(sock.subscribe())


def read_request(rx, limit: int = 1 << 16) -> bytes:
    """Read until the end of an HTTP head, the end of the stream, or an error."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < limit:
        try:
            data += rx.blocking_read(4096)
        except Err:
            break
    return data


def read_to_end(rx) -> tuple[bytes, str]:
    """Everything until the stream ends; (data, how it ended: closed or error)."""
    data = b""
    while True:
        try:
            data += rx.blocking_read(65536)
        except Err as e:
            return data, "closed" if isinstance(e.value, guestnet.streams.StreamError_Closed) else "error"


def close_socket(sock) -> None:
    try:
        sock.shutdown(tcp.ShutdownType.BOTH)
    except Err:
        pass
    sock.__exit__(None, None, None)


def parse_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """Positional arguments and `--name=value` options (`--flag` alone means `yes`)."""
    positional, options = [], {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            options[name] = value if _ else "yes"
        else:
            positional.append(arg)
    return positional, options
