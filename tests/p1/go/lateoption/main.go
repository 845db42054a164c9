// lateoption HOST PORT NAME: Timecraft's Go dialer order, with raw imports and no SDK: a
// non-blocking connect, Go's poller waits for writability, SO_ERROR, net.FileConn, and only then
// the hTLS option (set through the connection's raw descriptor); then one HTTP/1.0 GET.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

//go:wasmimport wasi_snapshot_preview1 sock_open
func sockOpen(af int32, socktype int32, fd unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 sock_connect
func sockConnect(fd int32, addr unsafe.Pointer, port uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_getsockopt
func sockGetsockopt(fd int32, level int32, name int32, value unsafe.Pointer, length uint32) uint32

//go:wasmimport wasi_snapshot_preview1 sock_setsockopt
func sockSetsockopt(fd int32, level int32, name int32, value unsafe.Pointer, length uint32) uint32

func main() {
	ip := net.ParseIP(os.Args[1]).To4()
	port, _ := strconv.Atoi(os.Args[2])
	var raw [128]byte
	raw[0] = 1
	copy(raw[2:], ip)
	addr := [2]uint32{uint32(uintptr(unsafe.Pointer(&raw))), 128}
	var fd int32
	if e := sockOpen(1, 2, unsafe.Pointer(&fd)); e != 0 {
		fmt.Println("sock_open:", syscall.Errno(e))
		os.Exit(1)
	}
	syscall.SetNonblock(int(fd), true)
	e := sockConnect(fd, unsafe.Pointer(&addr), uint32(port))
	fmt.Println("connect in progress or done:", e == 0 || syscall.Errno(e) == syscall.EINPROGRESS)
	f := os.NewFile(uintptr(fd), "socket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		fmt.Println("FileConn:", err)
		os.Exit(1)
	}
	rc, _ := c.(syscall.Conn).SyscallConn()
	waited := false
	var soErr int32
	rc.Write(func(fd uintptr) bool { // wait for writability, then read SO_ERROR
		if !waited {
			waited = true
			return false
		}
		sockGetsockopt(int32(fd), 0, 2, unsafe.Pointer(&soErr), 4)
		return true
	})
	fmt.Println("so_error:", soErr)
	name := []byte(os.Args[3])
	var setErr uint32
	rc.Control(func(fd uintptr) {
		setErr = sockSetsockopt(int32(fd), 0x74696d65, 1, unsafe.Pointer(&name[0]), uint32(len(name)))
	})
	fmt.Println("htls option:", setErr)
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", os.Args[3])
	body, err := io.ReadAll(c)
	fmt.Printf("read %d bytes, err %v\n", len(body), err)
	c.Close()
}
