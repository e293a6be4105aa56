package mimic

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"testing"
)

func benchResponses(bodies ...[]byte) []*response {
	var rs []*response
	for i, b := range bodies {
		h := http.Header{
			"Content-Type":   {"text/html; charset=utf-8"},
			"Date":           {fmt.Sprintf("Sat, 21 Nov 2026 20:00:0%d GMT", i)},
			"Server":         {fmt.Sprintf("server-%d", i)},
			"Etag":           {fmt.Sprintf(`"%d"`, i)},
			"Last-Modified":  {"Sat, 21 Nov 2026 19:00:00 GMT"},
			"Content-Length": {fmt.Sprint(len(b))},
			"Cache-Control":  {"max-age=60"},
		}
		rs = append(rs, &response{backend: Backend{ID: fmt.Sprint(i)}, status: 200, header: h, body: b})
	}
	return rs
}

func runBallot(b *testing.B, rs []*response, wantTop int) {
	b.Helper()
	seed := maphash.MakeSeed()
	noise := newNoiseSet(nil, nil)
	var bal ballot
	b.ReportAllocs()
	b.SetBytes(int64(len(rs[0].body)))
	for b.Loop() {
		bal.reset(seed, noise, true, false, "", "/")
		top := 0
		for _, r := range rs {
			top = max(top, bal.add(r))
		}
		if top != wantTop {
			b.Fatalf("top group %d, want %d", top, wantTop)
		}
	}
}

// Three identical 2 KiB pages (the common case): raw hashes agree, nothing is canonicalized.
func BenchmarkNormalizeVote3Identical(b *testing.B) {
	runBallot(b, benchResponses(sitePage, sitePage, sitePage), 3)
}

// One of three differs: HTML is folded for every distinct body.
func BenchmarkNormalizeVote3OneTampered(b *testing.B) {
	bad := bytes.Replace(sitePage, []byte("paragraph 001"), []byte("paragraph XXX"), 1)
	runBallot(b, benchResponses(sitePage, sitePage, bad), 2)
}

// JSON bodies that differ only in member order and white space: canonical JSON on each.
func BenchmarkNormalizeVote3JSON(b *testing.B) {
	a := []byte(`{"name":"proteus","items":[1,2,3],"nested":{"a":true,"b":null},"n":1.50}`)
	c := []byte(`{ "nested": {"b": null, "a": true}, "items": [1, 2, 3], "name": "proteus", "n": 1.5 }`)
	rs := benchResponses(a, c, a)
	for _, r := range rs {
		r.header.Set("Content-Type", "application/json")
	}
	runBallot(b, rs, 3)
}

// benchGateway measures whole requests through a gateway in front of three net/http
// servers on loopback (client, gateway and executors share the machine's cores).
func benchGateway(b *testing.B, policy Policy) {
	bes, _ := startBenchBackends(b, 3)
	g, err := New(Options{Backends: bes, Routes: []Route{{Prefix: "/", Policy: policy}}})
	if err != nil {
		b.Fatal(err)
	}
	srv, _ := NewServer(g, ServerOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go Serve(ctx, srv, ln) // the cleartext fast path, as proteus gateway serves
	defer cancel()
	url := "http://" + ln.Addr().String() + "/"
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.StopTimer()
	g.Wait()
}

func startBenchBackends(b *testing.B, n int) (Static, []*http.Server) {
	var s Static
	var srvs []*http.Server
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write(sitePage)
		})}
		go srv.Serve(ln)
		b.Cleanup(func() { srv.Close() })
		srvs = append(srvs, srv)
		s = append(s, Backend{ID: fmt.Sprint("b", i), Addr: "http://" + ln.Addr().String()})
	}
	return s, srvs
}

func BenchmarkGatewayVote3(b *testing.B)  { benchGateway(b, PolicyVote) }
func BenchmarkGatewaySingle(b *testing.B) { benchGateway(b, PolicySingle) }
