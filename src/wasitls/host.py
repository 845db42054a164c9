"""The embedding API: a host built with the same options as the command line, running components.

    from wasitls import Host
    host = Host(dirs=["data::/data"], env={"NAME": "v"}, allow_net=["localhost"])
    status = host.run("guest.wasm", ["arg1"])
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO, Callable, Iterable, Mapping

from .component.backend import Backend
from .component.compile_cache import CompileCache, WasmFile
from .component.errors import ComponentError, GuestTrap
from .component.linker import HostLinker, split_name
from .component.values import Err, GuestExit
from .inputfiles import COMPONENT_LIMIT, InputFileError, open_input
from .policy import NetworkUse, Policy, PolicyError
from .wasi.ctx import BytesSource, FdSource, WasiCtx, WriterSink

DEFAULT_ENGINE = "fast"


class HostError(Exception):
    """Anything that stops a component from starting: one line for the person running it."""


def make_backend(name: str) -> Backend:
    """The component backend the `engine` option names ('fast' or 'reference')."""
    if name == "reference":
        from .component.reference import ReferenceBackend
        return ReferenceBackend()
    if name == "fast":
        from .component.fast import FastBackend
        return FastBackend()
    raise HostError(f"unknown engine {name!r} (choose 'fast' or 'reference')")


def _parse_env(env: Mapping[str, str] | Iterable[str]) -> list[tuple[str, str]]:
    if isinstance(env, Mapping):
        return [(str(k), str(v)) for k, v in env.items()]
    out = []
    for item in env:
        name, sep, value = item.partition("=")
        if not name:
            raise HostError(f"--env {item!r}: expected NAME=VALUE or NAME")
        if not sep:  # NAME alone passes the host's value on, as on wasmtime; nothing if the host has none
            if name not in os.environ:
                continue
            value = os.environ[name]
        out.append((name, value))
    return out


def _parse_http_client_identities(specs: Mapping[str, str] | Iterable[str], identities: Any) -> dict[str, str]:
    """--http-client-identity HOST=NAME: host (lowercase, '*' for any) -> the --identity NAME."""
    pairs = list(specs.items()) if isinstance(specs, Mapping) else [s.partition("=")[::2] for s in specs]
    known = set(identities) if isinstance(identities, Mapping) else {i.partition("=")[0] for i in identities}
    out = {}
    for host, name in pairs:
        if not host or not name:
            raise HostError(f"--http-client-identity {host}={name}: expected HOST=NAME")
        if name not in known:
            raise HostError(f"--http-client-identity {host}={name}: no --identity named {name!r}")
        out[host.lower()] = name
    return out


def _build_policy(policy: Any, allow_net: list[str], allow_listen: list[str], dirs: list[str]) -> Policy:
    """The lists as the command line gives them, or the embedder's own policy: a `Policy`, an object
    with `check(use, address)`, or a callable `(use, address) -> bool` asked for every address."""
    if policy is not None and (allow_net or allow_listen):
        raise HostError("give either policy or allow_net/allow_listen, not both")
    if policy is None or isinstance(policy, Policy):
        decide = None if policy is None else policy.decide
    elif callable(getattr(policy, "check", None)):
        decide = policy.check
    elif callable(policy):
        decide = policy
    else:
        raise HostError(f"policy must be a Policy, have a check(use, address) method, or be callable, not {policy!r}")
    try:
        built = Policy.build(allow_net=allow_net, allow_listen=allow_listen, dirs=dirs, decide=decide)
    except PolicyError as e:
        raise HostError(str(e)) from None
    if isinstance(policy, Policy):  # its rules and preopens, and the dirs given here
        built.net, built.listen = list(policy.net), list(policy.listen)
        built.preopens[:0] = policy.preopens
    return built


class Host:
    """A configured host. Each `run` starts a fresh guest with the same capabilities."""

    def __init__(
        self,
        *,
        dirs: Iterable[str] = (),
        env: Mapping[str, str] | Iterable[str] = (),
        allow_net: Iterable[str] = (),
        allow_listen: Iterable[str] = (),
        policy: Policy | Callable[[NetworkUse, Any], bool] | None = None,
        ca_file: str | os.PathLike | None = None,
        engine: str = DEFAULT_ENGINE,
        cache: bool = True,
        tls_trace: bool | Callable[[str], None] = False,
        tls_keylog: str | os.PathLike | None = None,
        identities: Mapping[str, tuple[str, str]] | Iterable[str] = (),
        client_ca_file: str | os.PathLike | None = None,
        pkcs11_module: str | os.PathLike | None = None,
        pkcs11_pin_file: str | os.PathLike | None = None,
        tls_guest_insecure: bool = False,
        tls_guest_roots: str = "narrow",
        stdin: bytes | int | None = None,
        stdout: int | BinaryIO | None = None,
        stderr: int | BinaryIO | None = None,
        progress: Callable[[str], None] | None = None,
        http_client_identities: Mapping[str, str] | Iterable[str] = (),
    ):
        self.policy = _build_policy(policy, list(allow_net), list(allow_listen), list(dirs))
        self.env = _parse_env(env)
        self.backend = make_backend(engine)
        self.cache = CompileCache.default() if cache else CompileCache(None)
        self.tls_options = {
            "ca_file": None if ca_file is None else str(ca_file),
            "trace": tls_trace,
            "keylog": None if tls_keylog is None else str(tls_keylog),
            "identities": identities,
            "client_ca_file": None if client_ca_file is None else str(client_ca_file),
            # identities `NAME=pkcs11:URI,CERT.pem`: the token's module and the file holding its PIN
            "pkcs11_module": None if pkcs11_module is None else str(pkcs11_module),
            "pkcs11_pin_file": None if pkcs11_pin_file is None else str(pkcs11_pin_file),
        }
        if tls_guest_roots not in ("narrow", "own"):
            raise HostError(f"tls_guest_roots: 'narrow' or 'own', not {tls_guest_roots!r}")
        # what a guest's ssl module may do (wasitls:tls/memory): skip checks, replace the host's roots
        self.tls_guest_policy = {"guest_insecure": bool(tls_guest_insecure), "guest_roots": tls_guest_roots}
        self._tls_config: Any = None
        self._interfaces: list[tuple[str, str, tuple[str, ...]]] | None = None
        self._link_choices: dict[str, Any] = {}  # see HostLinker: shared by the linkers this host makes
        self._ttys: tuple[bool, bool, bool] | None = None
        self.http_client_identities = _parse_http_client_identities(http_client_identities, identities)
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.progress = progress

    def _tls(self) -> Any:
        """TLS settings are made once per host and shared by its runs; the trust store and OpenSSL
        context inside them are built on the first TLS use (a guest without TLS never pays for them)."""
        if self._tls_config is None:
            from .tls.config import TlsConfigError, build_tls_config
            try:
                self._tls_config = build_tls_config(**self.tls_options, lazy=True)
            except TlsConfigError as e:
                raise HostError(str(e)) from None
            for name, value in self.tls_guest_policy.items():
                setattr(self._tls_config, name, value)
        return self._tls_config

    def _ctx(self, argv: list[str]) -> WasiCtx:
        self._tls()  # a bad TLS option stops the host before the guest runs
        ctx = WasiCtx(args=argv, env=list(self.env), policy=self.policy)
        if self._ttys is None:  # asked once: `wasitls serve` makes a context per request
            self._ttys = (os.isatty(0), os.isatty(1), os.isatty(2))
        if self.stdin is None:
            ctx.stdin = FdSource(0)
            ctx.stdin_tty = self._ttys[0]
        elif isinstance(self.stdin, int):
            ctx.stdin = FdSource(self.stdin)
        else:
            ctx.stdin = BytesSource(self.stdin)
        ctx.stdout = WriterSink(1 if self.stdout is None else self.stdout)
        ctx.stderr = WriterSink(2 if self.stderr is None else self.stderr)
        ctx.stdout_tty = self.stdout is None and self._ttys[1]
        ctx.stderr_tty = self.stderr is None and self._ttys[2]
        return ctx

    def linker(self, ctx: WasiCtx) -> HostLinker:
        """Every interface we serve, each made (and its module imported) only if the guest imports it."""
        from .served import interface_table, load_interface, package_of

        if self._interfaces is None:  # the same for every guest of this host (serve makes one per request)
            self._interfaces = interface_table(self.cache.directory)
        # registered alike every time, so the import a name resolves to is looked up once per host
        linker = HostLinker(self._link_choices)
        tls: list[Any] = []  # the guest's GuestTls, made (and OpenSSL loaded) when it links a TLS interface

        def guest_tls() -> Any:
            if not tls:
                from .tls_streams import GuestTls
                tls.append(GuestTls(self._tls(), ctx.lifetime))
            return tls[0]

        http: list[Any] = []  # the guest's GuestHttp, made when it links a wasi:http interface

        def guest_http() -> Any:
            if not http:
                from .http.context import GuestHttp
                http.append(GuestHttp(ctx.policy, ctx.lifetime, guest_tls, self.http_client_identities))
            return http[0]

        contexts = {"tls_interfaces": guest_tls, "http": guest_http}
        for module, name, names in self._interfaces:
            context = contexts.get(package_of(module), lambda: ctx)
            linker.register_deferred(names, lambda m=module, n=name, c=context: load_interface(m, n)(c()))
        return linker

    def load(self, component: str | os.PathLike | bytes) -> Any:
        wasm = _open_wasm(component, "component")
        try:
            return self.backend.load(wasm, cache=self.cache, progress=self.progress)
        except ComponentError as e:
            raise HostError(f"{component if not isinstance(component, bytes) else 'component'}: {e}") from None
        except InputFileError as e:  # it grew past the bound while we read it
            raise HostError(f"{component}: {e.strerror}") from None
        except OSError as e:  # the file could be opened but not read
            raise HostError(f"cannot read {component}: {e.strerror}") from None
        finally:
            if isinstance(wasm, WasmFile):
                wasm.close()

    def run(self, component: str | os.PathLike | bytes, args: Iterable[str] = (), *, argv0: str | None = None) -> int:
        """Runs a command component, or a WASI preview 1 command module; returns its exit status.
        Raises HostError if it cannot start."""
        if _is_core_module(component):
            return self._run_preview1(component, args, argv0)
        loaded = self.load(component)
        # any version of wasi:cli/run, as the component names it
        run_iface = next((n for n in loaded.exported_interfaces() if split_name(n)[0] == "wasi:cli/run"), None)
        if run_iface is None:
            raise HostError("not a command: the component exports no wasi:cli/run interface")
        if argv0 is None:
            # As on wasmtime: the file's own name, without the directories that lead to it.
            argv0 = "component.wasm" if isinstance(component, (bytes, bytearray)) else os.path.basename(os.fspath(component))
        ctx = self._ctx([argv0, *args])
        try:
            try:
                instance = loaded.instantiate(self.linker(ctx))
            except ComponentError as e:  # unserved imports, a link failure
                raise HostError(str(e)) from None
            result = instance.call(run_iface, "run")
            return 1 if isinstance(result, Err) else 0
        except GuestExit as e:
            return e.status
        finally:
            ctx.lifetime.end()


    def _run_preview1(self, module: str | os.PathLike | bytes, args: Iterable[str], argv0: str | None) -> int:
        """A WASI preview 1 command module (src/wasitls/preview1), with the same options and exit rules."""
        import wasmtime

        from .preview1 import run_module

        name = "module" if isinstance(module, (bytes, bytearray)) else os.fspath(module)
        wasm = _open_wasm(module, "module")
        if argv0 is None:
            argv0 = "module.wasm" if isinstance(module, (bytes, bytearray)) else os.path.basename(name)
        ctx = self._ctx([argv0, *args])
        wasmtime_engine = getattr(self.backend, "wasmtime_engine", None)  # compiled code is per engine
        if wasmtime_engine is None:
            wasmtime_engine = self.__dict__.setdefault("_p1_wasmtime_engine", wasmtime.Engine())
        warn = self.progress or (lambda line: print(f"wasitls: {line}", file=sys.stderr, flush=True))
        try:
            return run_module(wasm, ctx, wasmtime_engine=wasmtime_engine, cache=self.cache, tls_settings=self._tls,
                              progress=self.progress, warn=lambda line: warn(f"warning: {line}"))
        except ComponentError as e:
            raise HostError(f"{name}: {e}") from None
        finally:
            if isinstance(wasm, WasmFile):
                wasm.close()
            ctx.lifetime.end()


def _open_wasm(path: str | os.PathLike | bytes, kind: str) -> bytes | WasmFile:
    """The bytes given, or the file opened (read only if the compile cache does not already know it);
    a file that cannot be a wasm input is one line for the person running it."""
    if isinstance(path, (bytes, bytearray)):
        return bytes(path)
    try:
        return WasmFile(path)
    except InputFileError as e:  # a device, a FIFO, a socket; or larger than any component
        raise HostError(f"{path}: {e.strerror}") from None
    except FileNotFoundError:
        raise HostError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise HostError(f"{path} is a directory, not a {kind}") from None
    except OSError as e:
        raise HostError(f"cannot read {path}: {e.strerror}") from None


def _is_core_module(component: str | os.PathLike | bytes) -> bool:
    """A core module starts with the wasm magic and version 1 (a component has version 0x0d)."""
    if isinstance(component, (bytes, bytearray)):
        head = bytes(component[:8])
    else:
        try:
            with open_input(component, COMPONENT_LIMIT)[0] as f:  # never blocks on a FIFO or reads a device
                head = f.read(8)
        except OSError:
            return False  # load() reports it
    return head == b"\0asm\x01\0\0\0"


__all__ = ["Host", "HostError", "GuestTrap"]
