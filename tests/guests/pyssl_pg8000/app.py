"""pyssl_pg8000: pg8000, unchanged, over the guest's ssl module (built with `wasitls build`).

Usage: app.py HOST PORT USER [CERTFILE [KEYFILE]]
CERTFILE may be host-identity:NAME (the host holds the key). Prints the row of pg_stat_ssl for this
connection, or `error=<class>: <message>` (and `cause=` what pg8000 wrapped).
"""

import ssl
import sys

import pg8000.native


def main():
    host, port, user, *cert = sys.argv[1:]
    ctx = ssl.create_default_context()
    if cert:
        ctx.load_cert_chain(*cert)
    try:
        conn = pg8000.native.Connection(user, host=host, port=int(port), database="postgres", ssl_context=ctx)
        for ssl_on, version, client_dn in conn.run(
                "SELECT ssl, version, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()"):
            print(f"row={ssl_on}|{version}|{client_dn}")
        print(f"user={conn.run('SELECT current_user')[0][0]}")
        conn.close()
    except Exception as e:  # what a user of pg8000 would see
        print(f"error={type(e).__name__}: {e}")
        if e.__cause__ is not None:  # pg8000 wraps socket and TLS errors in InterfaceError
            print(f"cause={type(e.__cause__).__name__}: {e.__cause__}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
