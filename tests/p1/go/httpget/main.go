// httpget URL: http.Get through the default client (hTLS for https once the SDK is imported), then
// the status, body length and sha256; with -intls, the standard library's crypto/tls in the guest
// over the SDK's plain TCP dialer instead (the baseline the bench compares with).
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"context"
	"time"

	"wasitls.dev/guest/go/htls"
)

func main() {
	inTLS := flag.Bool("intls", false, "run TLS in the guest (crypto/tls) over a plain socket")
	caFile := flag.String("ca", "", "CA file for -intls (read from a preopen)")
	discard := flag.Bool("discard", false, "count the body without hashing it (the bench measures the transfer)")
	repeat := flag.Int("repeat", 1, "fetch this many times, each on a new connection; print the fastest")
	flag.Parse()
	client := http.DefaultClient
	if *inTLS {
		pool := x509.NewCertPool()
		if pem, err := os.ReadFile(*caFile); err == nil {
			pool.AppendCertsFromPEM(pem)
		}
		client = &http.Client{Transport: &http.Transport{
			DialContext:     func(ctx context.Context, n, a string) (net.Conn, error) { return htls.Dial(n, a) },
			TLSClientConfig: &tls.Config{RootCAs: pool},
		}}
	}
	if t, ok := client.Transport.(*http.Transport); ok {
		t.DisableKeepAlives = true // every fetch pays for its own connection and handshake
	} else if client.Transport == nil {
		http.DefaultTransport.(*http.Transport).DisableKeepAlives = true
	}
	best := time.Duration(0)
	for i := 0; i < *repeat; i++ {
		start := time.Now()
		resp, err := client.Get(flag.Arg(0))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		h := sha256.New()
		var sink io.Writer = h
		if *discard {
			sink = io.Discard
		}
		n, err := io.Copy(sink, resp.Body)
		resp.Body.Close()
		if err != nil {
			fmt.Println("body error:", err)
			os.Exit(1)
		}
		if took := time.Since(start); best == 0 || took < best {
			best = took
		}
		if i == 0 {
			fmt.Printf("status %d\nbytes %d\nsha256 %s\n", resp.StatusCode, n, hex.EncodeToString(h.Sum(nil)))
		}
	}
	fmt.Fprintf(os.Stderr, "seconds %.4f\n", best.Seconds())
}
