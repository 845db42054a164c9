"""pyssl_probe: ordinary stdlib TLS code (ssl, http.client, urllib, asyncio) in a guest, over
guest/python's _ssl (wasitls:tls/memory). One scenario per run:

  client HOST PORT NAME [opts]      wrap_socket, one HTTP/1.0 GET, facts and body
  nbclient HOST PORT NAME [opts]    the same on a non-blocking socket, driven by selectors
  bio HOST PORT NAME [opts]         the same over wrap_bio + MemoryBIO, driven by hand
  https HOST PORT PATH PATH2        http.client.HTTPSConnection: two requests, one connection
  urlopen URL [opts]                urllib.request.urlopen
  aclient HOST PORT NAME [opts]     asyncio.open_connection(ssl=ctx)
  server PORT COUNT [opts]          wrap_socket(server_side=True): echo one line per connection
  aserver PORT COUNT [opts]         asyncio.start_server(ssl=ctx): the same
  insecure                          try CERT_NONE and check_hostname=False

opts: --cafile F, --cert F, --key F, --password P, --identity NAME (host-held), --alpn a,b,
      --tls12 / --tls13 (pin the version), --require-cert (server), --sni (server callback),
      --insecure (client: ssl._create_unverified_context()), --unwrap (server: unwrap() after answering)
Every line printed is `key=value`; an SSL error prints `error=<class>` and `reason=<str>`.
"""

import asyncio
import http.client
import selectors
import socket
import ssl
import urllib.request

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import environment, exit as wasi_exit


def say(text):
    print(text, flush=True)


def options(args):
    opts = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("--tls12", "--tls13", "--require-cert", "--sni", "--insecure", "--unwrap"):
            opts[a[2:]] = True
            i += 1
        else:
            opts[a[2:]] = args[i + 1]
            i += 2
    return opts


def client_context(opts):
    if opts.get("insecure"):
        ctx = ssl._create_unverified_context()
        apply_common(ctx, opts)
        return ctx
    ctx = ssl.create_default_context(cafile=opts.get("cafile"))
    apply_common(ctx, opts)
    return ctx


def server_context(opts):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    apply_common(ctx, opts)
    if opts.get("require-cert"):
        ctx.verify_mode = ssl.CERT_REQUIRED
        if "cafile" in opts:
            ctx.load_verify_locations(opts["cafile"])
    if opts.get("sni"):
        def pick(sslobj, name, context):
            say(f"sni={name}")
        ctx.sni_callback = pick
    return ctx


def apply_common(ctx, opts):
    if "identity" in opts:
        ctx.load_cert_chain("host-identity:" + opts["identity"])
    elif "cert" in opts:
        ctx.load_cert_chain(opts["cert"], opts.get("key"), opts.get("password"))
    if "alpn" in opts:
        ctx.set_alpn_protocols(opts["alpn"].split(","))
    if opts.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if opts.get("tls13"):
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3


def facts(s):
    say(f"version={s.version()}")
    say(f"cipher={s.cipher()[0]}")
    say(f"alpn={s.selected_alpn_protocol()}")
    cert = s.getpeercert()
    if cert:
        say(f"peer_subject={dict(x[0] for x in cert['subject'])}")
        say(f"peer_san={cert.get('subjectAltName')}")
    der = s.getpeercert(binary_form=True)
    say(f"peer_der_len={0 if der is None else len(der)}")
    binding = s.get_channel_binding("tls-unique")
    say(f"tls_unique={binding.hex() if binding else None}")


def scenario_client(host, port, name, *rest):
    opts = options(rest)
    ctx = client_context(opts)
    with socket.create_connection((host, int(port))) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            facts(s)
            s.sendall(f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            say(f"received={len(data)}")
            say("body=" + data.split(b"\r\n\r\n", 1)[-1][:200].decode("utf-8", "replace"))


def scenario_bio(host, port, name, *rest):
    opts = options(rest)
    ctx = client_context(opts)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=name)
    sock = socket.create_connection((host, int(port)))

    def pump(op, *a):
        while True:
            try:
                result = op(*a)
            except ssl.SSLWantReadError:
                if outgoing.pending:
                    sock.sendall(outgoing.read())
                data = sock.recv(65536)
                if data:
                    incoming.write(data)
                else:
                    incoming.write_eof()
                continue
            if outgoing.pending:
                sock.sendall(outgoing.read())
            return result

    pump(obj.do_handshake)
    facts(obj)
    pump(obj.write, f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
    data = b""
    while True:
        try:
            chunk = pump(obj.read, 65536)
        except ssl.SSLZeroReturnError:
            break
        if not chunk:
            break
        data += chunk
    say(f"received={len(data)}")
    say("body=" + data.split(b"\r\n\r\n", 1)[-1][:200].decode("utf-8", "replace"))
    sock.close()


def scenario_nbclient(host, port, name, *rest):
    """A non-blocking socket driven by selectors: SSLWantReadError / SSLWantWriteError as CPython's."""
    opts = options(rest)
    ctx = client_context(opts)
    raw = socket.create_connection((host, int(port)))
    raw.setblocking(False)
    s = ctx.wrap_socket(raw, server_hostname=name, do_handshake_on_connect=False)
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)

    def retry(op, *a):
        while True:
            try:
                return op(*a)
            except ssl.SSLWantReadError:
                sel.modify(s, selectors.EVENT_READ)
                sel.select(timeout=30)
            except ssl.SSLWantWriteError:
                sel.modify(s, selectors.EVENT_WRITE)
                sel.select(timeout=30)

    retry(s.do_handshake)
    facts(s)
    retry(s.sendall, f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
    data = b""
    while True:
        if not s.pending():
            sel.select(timeout=30)
        try:
            chunk = s.recv(65536)
        except ssl.SSLWantReadError:
            continue
        if not chunk:
            break
        data += chunk
    say(f"timeout={s.gettimeout()} received={len(data)}")
    say("body=" + data.split(b"\r\n\r\n", 1)[-1][:200].decode("utf-8", "replace"))
    s.close()


def scenario_https(host, port, path1, path2, *rest):
    opts = options(rest)
    ctx = client_context(opts)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx)
    socks = set()
    for path in (path1, path2):
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        socks.add(id(conn.sock))
        say(f"status={response.status} length={len(body)}")
        say("body=" + body[:200].decode("utf-8", "replace"))
    say(f"connections={len(socks)}")
    facts(conn.sock)
    conn.close()


def scenario_urlopen(url, *rest):
    opts = options(rest)
    ctx = client_context(opts)
    with urllib.request.urlopen(url, context=ctx) as response:
        body = response.read()
    say(f"status={response.status} length={len(body)}")
    say("body=" + body[:200].decode("utf-8", "replace"))


def scenario_aclient(host, port, name, *rest):
    opts = options(rest)
    ctx = client_context(opts)

    async def main():
        reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=name)
        sslobj = writer.get_extra_info("ssl_object")
        facts(sslobj)
        writer.write(f"GET / HTTP/1.0\r\nHost: {name}\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        say(f"received={len(data)}")
        say("body=" + data.split(b"\r\n\r\n", 1)[-1][:200].decode("utf-8", "replace"))
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass

    asyncio.run(main())


def serve_one(s):
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        line += chunk
    cert = s.getpeercert()
    who = "-" if not cert else dict(x[0] for x in cert["subject"]).get("commonName", "?")
    say(f"served version={s.version()} alpn={s.selected_alpn_protocol()} client={who} line={line.strip().decode()}")
    s.sendall(b"echo " + line)


def scenario_server(port, count, *rest):
    opts = options(rest)
    ctx = server_context(opts)
    listener = socket.create_server(("127.0.0.1", int(port)))
    say("listening=1")
    for _ in range(int(count)):
        conn, _ = listener.accept()
        try:
            with ctx.wrap_socket(conn, server_side=True) as s:
                serve_one(s)
                if opts.get("unwrap"):
                    plain = s.unwrap()  # close_notify sent; back to the plain socket
                    say(f"unwrapped={type(plain).__name__}")
                    plain.close()
        except ssl.SSLError as e:
            say(f"server_error={type(e).__name__} reason={e}")
    listener.close()


def scenario_aserver(port, count, *rest):
    opts = options(rest)
    ctx = server_context(opts)

    async def main():
        done = asyncio.Event()
        left = [int(count)]

        async def handle(reader, writer):
            sslobj = writer.get_extra_info("ssl_object")
            line = await reader.readline()
            cert = sslobj.getpeercert()
            who = "-" if not cert else dict(x[0] for x in cert["subject"]).get("commonName", "?")
            say(f"served version={sslobj.version()} alpn={sslobj.selected_alpn_protocol()} client={who} "
                f"line={line.strip().decode()}")
            writer.write(b"echo " + line)
            await writer.drain()
            writer.close()
            left[0] -= 1
            if not left[0]:
                done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", int(port), ssl=ctx)
        say("listening=1")
        await done.wait()
        server.close()

    asyncio.run(main())


def scenario_insecure():
    ctx = ssl.create_default_context()
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS)  # CERT_NONE, no host name check: CPython's old default
    for what, change in (("check_hostname", lambda: setattr(ctx, "check_hostname", False)),
                         ("cert_none", lambda: ssl._create_unverified_context()),
                         ("bare_context", lambda: bare.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(),
                                                                server_hostname="example.test"))):
        try:
            change()
            say(f"{what}=allowed")
        except ssl.SSLError as e:
            say(f"{what}=refused reason={e}")


SCENARIOS = {
    "client": scenario_client, "nbclient": scenario_nbclient, "bio": scenario_bio, "https": scenario_https, "urlopen": scenario_urlopen,
    "aclient": scenario_aclient, "server": scenario_server, "aserver": scenario_aserver,
    "insecure": scenario_insecure,
}


class Run(exports.Run):
    def run(self) -> None:
        args = environment.get_arguments()[1:]
        try:
            SCENARIOS[args[0]](*args[1:])
        except ssl.SSLCertVerificationError as e:
            say(f"error=SSLCertVerificationError verify_code={e.verify_code}")
            say(f"reason={e}")
            wasi_exit.exit(Err(None))
        except ssl.SSLError as e:
            say(f"error={type(e).__name__}")
            say(f"reason={e}")
            wasi_exit.exit(Err(None))
