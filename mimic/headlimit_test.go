package mimic

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/bus"
)

// endlessHeadServer is a hostile executor: to every request it answers prefix and then
// filler bytes without end, until the connection breaks. Each connection's end is reported
// on the returned channel with the bytes written. tlsConf, when set, serves TLS.
func endlessHeadServer(t *testing.T, prefix, filler string, tlsConf *tls.Config) (string, <-chan int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan int64, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				chunk := []byte(strings.Repeat(filler, 32<<10/len(filler)))
				n, err := c.Write([]byte(prefix))
				sent := int64(n)
				for err == nil {
					n, err = c.Write(chunk)
					sent += int64(n)
				}
				done <- sent
			}()
		}
	}()
	return ln.Addr().String(), done
}

func TestH1ClientBoundsTheResponseHead(t *testing.T) {
	tests := []struct{ name, prefix, filler string }{
		{"one endless header line", "HTTP/1.1 200 OK\r\nX-Long: ", "a"},
		{"endless header lines", "HTTP/1.1 200 OK\r\n", "X-Many: a\r\n"},
		{"endless status line", "HTTP/1.1 200 ", "O"},
		{"endless interim responses", "", "HTTP/1.1 100 Continue\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, done := endlessHeadServer(t, tc.prefix, tc.filler, nil)
			c := newH1Client(4, 64<<10)
			defer c.CloseIdle()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var buf bytes.Buffer
			_, _, _, err := c.fetch(&h1Request{ctx: ctx, addr: addr, method: "GET", uri: "/", host: "x"}, &buf, 1<<20, nil, nil)
			if !errors.Is(err, errHeadTooLarge) {
				t.Fatalf("fetch: %v, want errHeadTooLarge", err)
			}
			<-done // the client closed the connection: the hostile writer stopped
		})
	}
}

// A head just under the bound is read whole, on the slow path (it does not fit the buffer).
func TestH1ClientTakesAHeadUnderTheBound(t *testing.T) {
	long := strings.Repeat("b", 60<<10)
	addr, _ := rawServer(t, func(int, *http.Request) (string, bool) {
		return "HTTP/1.1 200 OK\r\nX-Long: " + long + "\r\nContent-Length: 2\r\n\r\nok", false
	})
	c := newH1Client(4, 64<<10)
	defer c.CloseIdle()
	for range 2 { // the second on the kept-alive connection, whose bound starts afresh
		if status, body, err := h1Get(t, c, addr, "GET"); err != nil || status != 200 || body != "ok" {
			t.Fatalf("got %d %q %v", status, body, err)
		}
	}
}

// An executor whose head never ends, over http:// (the gateway's own client) and https://
// (its http.Transport), is an availability dissent and the client is answered by the others.
func TestEndlessExecutorHeadIsDissent(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			honest, _ := startGoBackends(t, 2, hello)
			var conf *tls.Config
			if scheme == "https" {
				conf = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			addr, done := endlessHeadServer(t, "HTTP/1.1 200 OK\r\nX-Long: ", "a", conf)
			bes := append(honest, Backend{ID: "hostile", Variant: "raw", Addr: scheme + "://" + addr})
			b := bus.New()
			evs, cancel := b.Subscribe(64, bus.KindPrefix("gateway."))
			defer cancel()
			g, err := New(Options{Backends: bes, Bus: b, K: 3, WaitAll: true, UpstreamTimeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			tr := g.h1.tls.(*http.Transport)
			if tr.MaxResponseHeaderBytes != 64<<10 {
				t.Fatalf("https transport head bound %d", tr.MaxResponseHeaderBytes)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool}
			url := "http://" + startGateway(t, g, ServerOptions{})
			if code, body := get(t, http.DefaultClient, url+"/"); code != 200 || body != "hello\n" {
				t.Fatalf("got %d %q", code, body)
			}
			<-done
			g.Wait()
			for {
				select {
				case e := <-evs:
					if e.Kind != EventDissent || e.Subject != "hostile" {
						continue
					}
					msg, _ := e.Attrs["error"].(string)
					if e.Attrs["kind"] != DissentAvailability || !strings.Contains(msg, "head") && !strings.Contains(msg, "header") {
						t.Fatalf("dissent %v", e.Attrs)
					}
					return
				default:
					t.Fatal("no dissent from the hostile executor")
				}
			}
		})
	}
}

// Beside real nginx and lighttpd, an executor whose head never ends (one header line without
// end) neither stalls the answer nor grows the gateway: the client gets the page nginx and
// lighttpd agree on, and the hostile executor is an availability dissent for its head.
func TestEndlessHeadBesideNginxAndLighttpd(t *testing.T) {
	ngDir, ltDir := t.TempDir(), t.TempDir()
	writeSite(t, ngDir)
	writeSite(t, ltDir)
	ng, _ := startNginx(t, ngDir)
	lt, _ := startLighttpd(t, ltDir)
	addr, done := endlessHeadServer(t, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Pad: ", "a", nil)
	b := bus.New()
	evs, cancel := b.Subscribe(64, bus.KindPrefix("gateway."))
	defer cancel()
	g, err := New(Options{Backends: Static{ng, lt, {ID: "hostile", Variant: "raw", Addr: "http://" + addr}},
		Bus: b, K: 3, WaitAll: true, UpstreamTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + startGateway(t, g, ServerOptions{})
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, sitePage) {
		t.Fatalf("got %d, %d bytes", resp.StatusCode, len(body))
	}
	if sent := <-done; sent < 64<<10 {
		t.Fatalf("the hostile executor sent only %d bytes", sent)
	}
	g.Wait()
	var got []string
	for {
		select {
		case e := <-evs:
			if e.Kind == EventDissent {
				got = append(got, e.Subject)
				if msg, _ := e.Attrs["error"].(string); e.Subject != "hostile" || !strings.Contains(msg, "head over the limit") {
					t.Fatalf("dissent %s %v", e.Subject, e.Attrs)
				}
			}
			continue
		default:
		}
		break
	}
	if len(got) != 1 {
		t.Fatalf("dissents %v, want the hostile executor's alone", got)
	}
}
