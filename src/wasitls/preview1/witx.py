"""The types of wasi_snapshot_preview1 (typenames.witx): numbers, flag bits and memory layouts.

Names follow the witx (`errno::badf` is `BADF`); sizes and offsets are the little-endian wasm32
layouts the witx implies. Nothing here does I/O.
"""

from __future__ import annotations

import errno as E

# -- errno: numbered in witx order ----------------------------------------------------------------
_ERRNO_NAMES = (
    "SUCCESS 2BIG ACCES ADDRINUSE ADDRNOTAVAIL AFNOSUPPORT AGAIN ALREADY BADF BADMSG BUSY CANCELED CHILD "
    "CONNABORTED CONNREFUSED CONNRESET DEADLK DESTADDRREQ DOM DQUOT EXIST FAULT FBIG HOSTUNREACH IDRM ILSEQ "
    "INPROGRESS INTR INVAL IO ISCONN ISDIR LOOP MFILE MLINK MSGSIZE MULTIHOP NAMETOOLONG NETDOWN NETRESET "
    "NETUNREACH NFILE NOBUFS NODEV NOENT NOEXEC NOLCK NOLINK NOMEM NOMSG NOPROTOOPT NOSPC NOSYS NOTCONN NOTDIR "
    "NOTEMPTY NOTRECOVERABLE NOTSOCK NOTSUP NOTTY NXIO OVERFLOW OWNERDEAD PERM PIPE PROTO PROTONOSUPPORT "
    "PROTOTYPE RANGE ROFS SPIPE SRCH STALE TIMEDOUT TXTBSY XDEV NOTCAPABLE"
).split()
ERRNO = {name: number for number, name in enumerate(_ERRNO_NAMES)}
SUCCESS, ACCES, ADDRINUSE, AGAIN, ALREADY, BADF = (ERRNO[n] for n in ("SUCCESS", "ACCES", "ADDRINUSE", "AGAIN",
                                                                     "ALREADY", "BADF"))
CONNABORTED, CONNREFUSED, CONNRESET, EXIST, FAULT = (ERRNO[n] for n in ("CONNABORTED", "CONNREFUSED", "CONNRESET",
                                                                       "EXIST", "FAULT"))
INPROGRESS, INVAL, IO, ISCONN, ISDIR, NAMETOOLONG = (ERRNO[n] for n in ("INPROGRESS", "INVAL", "IO", "ISCONN",
                                                                       "ISDIR", "NAMETOOLONG"))
NOENT, NOPROTOOPT, NOSYS, NOTCONN, NOTDIR, NOTSOCK, NOTSUP = (ERRNO[n] for n in (
    "NOENT", "NOPROTOOPT", "NOSYS", "NOTCONN", "NOTDIR", "NOTSOCK", "NOTSUP"))
OVERFLOW, PERM, PIPE, PROTO, SPIPE, NOTCAPABLE, AFNOSUPPORT, DESTADDRREQ, MSGSIZE, NOMEM, ILSEQ = (
    ERRNO[n] for n in ("OVERFLOW", "PERM", "PIPE", "PROTO", "SPIPE", "NOTCAPABLE", "AFNOSUPPORT", "DESTADDRREQ",
                       "MSGSIZE", "NOMEM", "ILSEQ"))

# the host's errno numbers -> preview 1's, by name (the numbers differ between the two)
_HOST_ERRNO = {getattr(E, "E" + name): number for name, number in ERRNO.items()
               if name not in ("SUCCESS", "NOTCAPABLE") and hasattr(E, "E" + name)}
_HOST_ERRNO[E.E2BIG] = ERRNO["2BIG"]
_HOST_ERRNO[E.EWOULDBLOCK] = AGAIN
_HOST_ERRNO[getattr(E, "EOPNOTSUPP", E.ENOTSUP)] = NOTSUP


def from_host_errno(n: int | None) -> int:
    return _HOST_ERRNO.get(n, IO) if n else IO


# wasi:filesystem error-code -> errno, as wasmtime's preview-1 adapter maps them
_FS_CODES = {
    "access": "ACCES", "would-block": "AGAIN", "already": "ALREADY", "bad-descriptor": "BADF", "busy": "BUSY",
    "deadlock": "DEADLK", "quota": "DQUOT", "exist": "EXIST", "file-too-large": "FBIG",
    "illegal-byte-sequence": "ILSEQ", "in-progress": "INPROGRESS", "interrupted": "INTR", "invalid": "INVAL",
    "io": "IO", "is-directory": "ISDIR", "loop": "LOOP", "too-many-links": "MLINK", "message-size": "MSGSIZE",
    "name-too-long": "NAMETOOLONG", "no-device": "NODEV", "no-entry": "NOENT", "no-lock": "NOLCK",
    "insufficient-memory": "NOMEM", "insufficient-space": "NOSPC", "not-directory": "NOTDIR",
    "not-empty": "NOTEMPTY", "not-recoverable": "NOTRECOVERABLE", "unsupported": "NOTSUP", "no-tty": "NOTTY",
    "no-such-device": "NXIO", "overflow": "OVERFLOW", "not-permitted": "PERM", "pipe": "PIPE",
    "read-only": "ROFS", "invalid-seek": "SPIPE", "text-file-busy": "TXTBSY", "cross-device": "XDEV",
}
# wasi:sockets error-code -> errno
_NET_CODES = {
    "access-denied": "ACCES", "not-supported": "NOTSUP", "invalid-argument": "INVAL", "out-of-memory": "NOMEM",
    "timeout": "TIMEDOUT", "concurrency-conflict": "ALREADY", "not-in-progress": "INVAL", "would-block": "AGAIN",
    "invalid-state": "INVAL", "new-socket-limit": "MFILE", "address-not-bindable": "ADDRNOTAVAIL",
    "address-in-use": "ADDRINUSE", "remote-unreachable": "HOSTUNREACH", "connection-refused": "CONNREFUSED",
    "connection-reset": "CONNRESET", "connection-aborted": "CONNABORTED", "datagram-too-large": "MSGSIZE",
    "name-unresolvable": "NOENT", "temporary-resolver-failure": "AGAIN", "permanent-resolver-failure": "NOENT",
    "unknown": "IO",
}


def from_fs_code(code: str) -> int:
    return ERRNO[_FS_CODES.get(code, "IO")]


def from_net_code(code: str) -> int:
    return ERRNO[_NET_CODES.get(code, "IO")]


# -- filetype, fdflags, oflags, lookupflags, rights ----------------------------------------------
FILETYPE_UNKNOWN, FILETYPE_BLOCK_DEVICE, FILETYPE_CHARACTER_DEVICE, FILETYPE_DIRECTORY = 0, 1, 2, 3
FILETYPE_REGULAR_FILE, FILETYPE_SOCKET_DGRAM, FILETYPE_SOCKET_STREAM, FILETYPE_SYMBOLIC_LINK = 4, 5, 6, 7
FILETYPE_OF = {  # wasi:filesystem descriptor-type -> filetype
    "unknown": 0, "block-device": 1, "character-device": 2, "directory": 3, "regular-file": 4,
    "symbolic-link": 7, "fifo": 0, "socket": 0,
}

FDFLAGS_APPEND, FDFLAGS_DSYNC, FDFLAGS_NONBLOCK, FDFLAGS_RSYNC, FDFLAGS_SYNC = 1, 2, 4, 8, 16
OFLAGS_CREAT, OFLAGS_DIRECTORY, OFLAGS_EXCL, OFLAGS_TRUNC = 1, 2, 4, 8
LOOKUPFLAGS_SYMLINK_FOLLOW = 1

_RIGHTS = (
    "FD_DATASYNC FD_READ FD_SEEK FD_FDSTAT_SET_FLAGS FD_SYNC FD_TELL FD_WRITE FD_ADVISE FD_ALLOCATE "
    "PATH_CREATE_DIRECTORY PATH_CREATE_FILE PATH_LINK_SOURCE PATH_LINK_TARGET PATH_OPEN FD_READDIR "
    "PATH_READLINK PATH_RENAME_SOURCE PATH_RENAME_TARGET PATH_FILESTAT_GET PATH_FILESTAT_SET_SIZE "
    "PATH_FILESTAT_SET_TIMES FD_FILESTAT_GET FD_FILESTAT_SET_SIZE FD_FILESTAT_SET_TIMES PATH_SYMLINK "
    "PATH_REMOVE_DIRECTORY PATH_UNLINK_FILE POLL_FD_READWRITE SOCK_SHUTDOWN SOCK_ACCEPT"
).split()
RIGHT = {name: 1 << bit for bit, name in enumerate(_RIGHTS)}
RIGHTS_ALL = (1 << len(_RIGHTS)) - 1


def rights(*names: str) -> int:
    value = 0
    for name in names:
        value |= RIGHT[name]
    return value


# what wasmtime reports for a preopened directory (many userlands expect exactly these)
PREOPEN_RIGHTS_BASE = rights(
    "PATH_CREATE_DIRECTORY", "PATH_CREATE_FILE", "PATH_LINK_SOURCE", "PATH_LINK_TARGET", "PATH_OPEN",
    "FD_READDIR", "PATH_READLINK", "PATH_RENAME_SOURCE", "PATH_RENAME_TARGET", "PATH_SYMLINK",
    "PATH_REMOVE_DIRECTORY", "PATH_UNLINK_FILE", "PATH_FILESTAT_GET", "PATH_FILESTAT_SET_TIMES",
    "FD_FILESTAT_GET", "FD_FILESTAT_SET_TIMES")
PREOPEN_RIGHTS_INHERITING = PREOPEN_RIGHTS_BASE | rights(
    "FD_DATASYNC", "FD_READ", "FD_SEEK", "FD_FDSTAT_SET_FLAGS", "FD_SYNC", "FD_TELL", "FD_WRITE", "FD_ADVISE",
    "FD_ALLOCATE", "FD_FILESTAT_GET", "FD_FILESTAT_SET_SIZE", "FD_FILESTAT_SET_TIMES", "POLL_FD_READWRITE")
DIRECTORY_RIGHTS_REMOVED = rights("FD_SEEK", "FD_FILESTAT_SET_SIZE", "PATH_FILESTAT_SET_SIZE")
SOCKET_RIGHTS = rights("FD_READ", "FD_WRITE", "FD_FDSTAT_SET_FLAGS", "FD_FILESTAT_GET", "POLL_FD_READWRITE",
                       "SOCK_SHUTDOWN", "SOCK_ACCEPT")

# -- clocks, whence, advice, fstflags ------------------------------------------------------------
CLOCK_REALTIME, CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID = 0, 1, 2, 3
WHENCE_SET, WHENCE_CUR, WHENCE_END = 0, 1, 2
ADVICE = {0: "normal", 1: "sequential", 2: "random", 3: "will-need", 4: "dont-need", 5: "no-reuse"}
FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW, FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW = 1, 2, 4, 8

# -- poll_oneoff ---------------------------------------------------------------------------------
EVENTTYPE_CLOCK, EVENTTYPE_FD_READ, EVENTTYPE_FD_WRITE = 0, 1, 2
SUBCLOCKFLAGS_SUBSCRIPTION_CLOCK_ABSTIME = 1
EVENTRWFLAGS_FD_READWRITE_HANGUP = 1
SUBSCRIPTION_SIZE = 48  # userdata u64 @0, tag u8 @8, clock {id u32 @16, timeout u64 @24, precision @32, flags u16 @40}
EVENT_SIZE = 32  # userdata u64 @0, error u16 @8, type u8 @10, nbytes u64 @16, flags u16 @24

# -- sockets -------------------------------------------------------------------------------------
RIFLAGS_RECV_PEEK, RIFLAGS_RECV_WAITALL = 1, 2
ROFLAGS_RECV_DATA_TRUNCATED = 1
SDFLAGS_RD, SDFLAGS_WR = 1, 2

# -- layouts -------------------------------------------------------------------------------------
FDSTAT_SIZE = 24  # filetype u8 @0, flags u16 @2, rights_base u64 @8, rights_inheriting u64 @16
FILESTAT_SIZE = 64  # dev @0, ino @8, filetype u8 @16, nlink @24, size @32, atim @40, mtim @48, ctim @56
DIRENT_SIZE = 24  # d_next u64 @0, d_ino u64 @8, d_namlen u32 @16, d_type u8 @20
PREOPENTYPE_DIR = 0
