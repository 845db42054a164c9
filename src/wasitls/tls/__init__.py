"""The TLS core, done by the host: a sans-I/O engine over OpenSSL 3 (engine.py), its ctypes binding
(openssl.py), trust stores (trust.py), identities (identity.py) and a host's TLS settings (config.py).
Imports nothing of wasi/ or component/: tls_streams.py joins it to byte streams."""
