"""TLS done by the host: a sans-I/O engine over OpenSSL 3 (engine.py), its ctypes binding
(openssl.py), trust stores (trust.py) and identities (identity.py)."""
