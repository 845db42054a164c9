// httpsserver ADDR IDENTITY N [client-cert]: an HTTPS server with no TLS code of its own: the host
// runs the server handshake (server-side hTLS) with the host-held identity; serves N requests.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"

	"wasitls.dev/guest/go/htls"
)

type peerKey struct{}

func main() {
	l, err := htls.ListenTLS("tcp", os.Args[1], os.Args[2])
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	l.ALPN = []string{"http/1.1"}
	l.RequestClientCert = len(os.Args) > 4
	n, _ := strconv.Atoi(os.Args[3])
	fmt.Println("listening")
	done := make(chan struct{}, n)
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := r.Context().Value(peerKey{}).(net.Conn)
			subject, _ := htls.Option(c, htls.OptionPeerSubject)
			version, _ := htls.Option(c, htls.OptionVersion)
			w.Header().Set("Connection", "close")
			fmt.Fprintf(w, "hello %s from a Go guest over %s; client %q\n", r.URL.Path, version, subject)
			done <- struct{}{}
		}),
	}
	go srv.Serve(l)
	for i := 0; i < n; i++ {
		<-done
	}
	fmt.Println("served", n)
}
