//go:build wasip1

// Package htls gives GOOS=wasip1 programs TCP sockets and host TLS (hTLS) through the WASI preview 1
// socket extension that wasitls serves (the one Timecraft serves, same ABI).
//
// Dial, Listen: plain TCP as net.Conn / net.Listener. DialTLS: a connection the host encrypts
// (its OpenSSL, its trust store, SNI and host-name checks); the guest reads and writes plaintext.
// ListenTLS: each accepted connection gets the host's server handshake with a host-held identity.
// Importing the package points http.DefaultTransport at these dialers, so http.Get("https://...")
// uses hTLS and never runs crypto/tls inside the guest.
package htls

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// Options of the hTLS level (docs/preview1.md has the table).
const (
	Level               = 0x74696d65 // TIMECRAFT_LEVEL
	OptionServerName    = 1          // set: server name; starts the client handshake (Timecraft's HTLS_OPTION)
	OptionALPN          = 2          // set: comma-separated ALPN ids; get: the chosen one
	OptionIdentity      = 3          // set: a host-held client identity by name
	OptionServer        = 4          // set on an accepted socket: host-held identity; starts the server handshake
	OptionVersion       = 5          // get: "TLSv1.3"
	OptionCipher        = 6          // get: cipher suite name
	OptionRequestClient = 7          // set (int 1) before OptionServer: ask for a client certificate
	OptionPeerSubject   = 8          // get: the verified peer certificate's subject
)

const (
	afInet, afInet6 = 1, 2
	sockStream      = 2
	solSocket       = 0
	soReuseaddr     = 0
	soError         = 2
)

func errnoErr(op string, e uint32) error {
	if e == 0 {
		return nil
	}
	return os.NewSyscallError(op, syscall.Errno(e))
}

// addressV2 is the extension's address: {buf, buf_len} with a 128-byte buffer, u16 family at 0 and
// the octets from offset 2.
type addressV2 struct {
	buf    uint32
	bufLen uint32
}

func rawAddress(ip net.IP, raw *[128]byte) (*addressV2, int32) {
	if ip4 := ip.To4(); ip4 != nil {
		raw[0] = afInet
		copy(raw[2:], ip4)
		return &addressV2{uint32(uintptr(unsafe.Pointer(raw))), 128}, afInet
	}
	raw[0] = afInet6
	copy(raw[2:], ip.To16())
	return &addressV2{uint32(uintptr(unsafe.Pointer(raw))), 128}, afInet6
}

// wasiAddrinfo and wasiSockaddr: the nodes the guest allocates for sock_getaddrinfo to fill.
type wasiAddrinfo struct {
	flags        uint16
	family       uint8
	socktype     uint8
	protocol     uint32
	addrlen      uint32
	addr         uint32
	canonname    uint32
	canonnameLen uint32
	next         uint32
}

type wasiSockaddr struct {
	family  uint32
	dataLen uint32
	data    uint32
}

// Lookup resolves a host name with the host's resolver (and its policy).
func Lookup(host string) ([]net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IP{ip}, nil
	}
	const max = 8
	var nodes [max]wasiAddrinfo
	var addrs [max]wasiSockaddr
	var data [max][18]byte
	for i := range nodes {
		addrs[i] = wasiSockaddr{dataLen: 18, data: uint32(uintptr(unsafe.Pointer(&data[i])))}
		nodes[i].addr = uint32(uintptr(unsafe.Pointer(&addrs[i])))
		if i+1 < max {
			nodes[i].next = uint32(uintptr(unsafe.Pointer(&nodes[i+1])))
		}
	}
	hints := wasiAddrinfo{socktype: sockStream}
	first := uint32(uintptr(unsafe.Pointer(&nodes[0])))
	name := []byte(host)
	service := []byte("0")
	var count uint32
	e := sockGetaddrinfo(unsafe.Pointer(&name[0]), uint32(len(name)), unsafe.Pointer(&service[0]),
		uint32(len(service)), unsafe.Pointer(&hints), unsafe.Pointer(&first), max, unsafe.Pointer(&count))
	if e != 0 || count == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	ips := make([]net.IP, 0, count)
	for i := uint32(0); i < count; i++ {
		if nodes[i].family == afInet6 {
			ips = append(ips, net.IP(append([]byte(nil), data[i][2:18]...)))
		} else {
			ips = append(ips, net.IPv4(data[i][2], data[i][3], data[i][4], data[i][5]))
		}
	}
	return ips, nil
}

func splitHostPort(address string) (string, int, error) {
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		if port, err = net.LookupPort("tcp", portText); err != nil {
			return "", 0, err
		}
	}
	return host, port, nil
}

// dial connects a new socket to address without blocking the Go runtime: a non-blocking connect,
// the hTLS options (when serverName is set) while it is in progress, then Go's poller waits until the
// socket is writable, which the host reports once the connection (and its handshake) is done.
func dial(network, address, serverName string, alpn []string) (net.Conn, error) {
	host, port, err := splitHostPort(address)
	if err != nil {
		return nil, err
	}
	ips, err := Lookup(host)
	if err != nil {
		return nil, err
	}
	if serverName == "-" {
		serverName = host
	}
	var last error
	for _, ip := range ips {
		c, err := dialOne(ip, port, serverName, alpn)
		if err == nil {
			return c, nil
		}
		last = err
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: last}
}

func dialOne(ip net.IP, port int, serverName string, alpn []string) (net.Conn, error) {
	var raw [128]byte
	addr, af := rawAddress(ip, &raw)
	var fd int32
	if e := sockOpen(af, sockStream, unsafe.Pointer(&fd)); e != 0 {
		return nil, errnoErr("sock_open", e)
	}
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		syscall.Close(int(fd))
		return nil, err
	}
	if e := sockConnect(fd, unsafe.Pointer(addr), uint32(port)); e != 0 && syscall.Errno(e) != syscall.EINPROGRESS {
		syscall.Close(int(fd))
		return nil, errnoErr("sock_connect", e)
	}
	if serverName != "" {
		if len(alpn) > 0 {
			if err := setString(fd, OptionALPN, joinComma(alpn)); err != nil {
				syscall.Close(int(fd))
				return nil, err
			}
		}
		if err := setString(fd, OptionServerName, serverName); err != nil {
			syscall.Close(int(fd))
			return nil, err
		}
	}
	f := os.NewFile(uintptr(fd), "socket")
	c, err := net.FileConn(f)
	f.Close() // FileConn holds its own reference to the descriptor
	if err != nil {
		return nil, err
	}
	if err := waitConnected(c); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// waitConnected parks the goroutine in Go's poller until the socket is writable, then reads
// SO_ERROR: the connect's result, or EPROTO for a failed TLS handshake.
func waitConnected(c net.Conn) error {
	sc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	waited := false
	var soErr int32
	var callErr error
	err = sc.Write(func(fd uintptr) bool {
		if !waited {
			waited = true
			return false // wait for writability first
		}
		callErr = errnoErr("sock_getsockopt", sockGetsockopt(int32(fd), solSocket, soError, unsafe.Pointer(&soErr), 4))
		return true
	})
	if err != nil {
		return err
	}
	if callErr != nil {
		return callErr
	}
	if soErr != 0 {
		return os.NewSyscallError("connect", syscall.Errno(soErr))
	}
	return nil
}

// Dial connects over plain TCP ("tcp", "tcp4" or "tcp6").
func Dial(network, address string) (net.Conn, error) {
	return dial(network, address, "", nil)
}

// DialTLS connects and has the host run TLS on the connection, the host name as the server name.
// alpn, if given, is offered (read the choice back with Option(c, OptionALPN)).
func DialTLS(network, address string, alpn ...string) (net.Conn, error) {
	return dial(network, address, "-", alpn)
}

func joinComma(items []string) string {
	out := ""
	for i, s := range items {
		if i > 0 {
			out += ","
		}
		out += s
	}
	return out
}

func setString(fd int32, option int32, value string) error {
	b := []byte(value)
	if len(b) == 0 {
		return errnoErr("sock_setsockopt", uint32(syscall.EINVAL))
	}
	return errnoErr("sock_setsockopt", sockSetsockopt(fd, Level, option, unsafe.Pointer(&b[0]), uint32(len(b))))
}

func setInt(fd int32, level, option int32, value int32) error {
	return errnoErr("sock_setsockopt", sockSetsockopt(fd, level, option, unsafe.Pointer(&value), 4))
}

// Option reads a string option of the hTLS level (OptionVersion, OptionCipher, OptionALPN, ...).
func Option(c net.Conn, option int32) (string, error) {
	var out string
	var callErr error
	err := control(c, func(fd int32) {
		var buf [512]byte
		if e := sockGetsockopt(fd, Level, option, unsafe.Pointer(&buf[0]), uint32(len(buf))); e != 0 {
			callErr = errnoErr("sock_getsockopt", e)
			return
		}
		n := 0
		for n < len(buf) && buf[n] != 0 {
			n++
		}
		out = string(buf[:n])
	})
	if err != nil {
		return "", err
	}
	return out, callErr
}

func control(c net.Conn, f func(fd int32)) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("htls: not a socket connection")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	return raw.Control(func(fd uintptr) { f(int32(fd)) })
}

// Listen opens a TCP listener on address ("127.0.0.1:8080", ":8080").
func Listen(network, address string) (net.Listener, error) {
	host, port, err := splitHostPort(address)
	if err != nil {
		return nil, err
	}
	ip := net.IPv4zero
	if host != "" {
		if ip = net.ParseIP(host); ip == nil {
			ips, err := Lookup(host)
			if err != nil {
				return nil, err
			}
			ip = ips[0]
		}
	}
	var raw [128]byte
	addr, af := rawAddress(ip, &raw)
	var fd int32
	if e := sockOpen(af, sockStream, unsafe.Pointer(&fd)); e != 0 {
		return nil, errnoErr("sock_open", e)
	}
	setInt(fd, solSocket, soReuseaddr, 1)
	if e := sockBind(fd, unsafe.Pointer(addr), uint32(port)); e != 0 {
		syscall.Close(int(fd))
		return nil, &net.OpError{Op: "listen", Net: network, Err: errnoErr("sock_bind", e)}
	}
	if e := sockListen(fd, 128); e != 0 {
		syscall.Close(int(fd))
		return nil, &net.OpError{Op: "listen", Net: network, Err: errnoErr("sock_listen", e)}
	}
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "listener:"+address)
	l, err := net.FileListener(f)
	f.Close()
	return l, err
}

// TLSListener hands out accepted connections on which the host runs the TLS server handshake
// with the host-held identity Identity (wasitls run --identity NAME=KEY,CERT).
type TLSListener struct {
	net.Listener
	Identity          string
	ALPN              []string
	RequestClientCert bool // ask for a client certificate, verified against --client-ca-file
}

// ListenTLS is Listen, then server-side hTLS on every accepted connection.
func ListenTLS(network, address, identity string) (*TLSListener, error) {
	l, err := Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &TLSListener{Listener: l, Identity: identity}, nil
}

func (l *TLSListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	var setErr error
	err = control(c, func(fd int32) {
		if len(l.ALPN) > 0 {
			if setErr = setString(fd, OptionALPN, joinComma(l.ALPN)); setErr != nil {
				return
			}
		}
		if l.RequestClientCert {
			if setErr = setInt(fd, Level, OptionRequestClient, 1); setErr != nil {
				return
			}
		}
		setErr = setString(fd, OptionServer, l.Identity)
	})
	if err == nil {
		err = setErr
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("htls: server handshake on an accepted connection: %w", err)
	}
	return c, nil
}

func dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return Dial(network, address)
}

func dialTLSContext(ctx context.Context, network, address string) (net.Conn, error) {
	return DialTLS(network, address)
}

func init() {
	// http.Get("https://...") and http.DefaultClient: TLS by the host, HTTP/1.1 over it
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		t.DialContext = dialContext
		t.DialTLSContext = dialTLSContext
		t.ForceAttemptHTTP2 = false
		// one host call fills a large buffer: each call costs microseconds a small read would repeat
		t.ReadBufferSize = 128 << 10
		t.WriteBufferSize = 64 << 10
	}
}
