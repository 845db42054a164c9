//go:build wasip1

package htls

import "unsafe"

// The socket extension's functions (V2 dialect), as wasitls and Timecraft serve them.

//go:wasmimport wasi_snapshot_preview1 sock_open
func sockOpen(af int32, socktype int32, fd unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_bind
func sockBind(fd int32, addr unsafe.Pointer, port uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_connect
func sockConnect(fd int32, addr unsafe.Pointer, port uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_listen
func sockListen(fd int32, backlog int32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_getsockopt
func sockGetsockopt(fd int32, level int32, name int32, value unsafe.Pointer, length uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_setsockopt
func sockSetsockopt(fd int32, level int32, name int32, value unsafe.Pointer, length uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_getaddrinfo
func sockGetaddrinfo(node unsafe.Pointer, nodeLen uint32, service unsafe.Pointer, serviceLen uint32,
	hints unsafe.Pointer, res unsafe.Pointer, maxResLen uint32, resLen unsafe.Pointer) uint32
