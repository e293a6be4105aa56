package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestGatewayUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("version: 1\ngateway:\n  k: 0\n  quorum: -1\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no backend", []string{"gateway"}, "at least one --backend"},
		{"bad url", []string{"gateway", "--backend", "ftp://x"}, "backends[0]"},
		{"bad policy", []string{"gateway", "--backend", "http://127.0.0.1:1", "--policy", "all"}, "--policy"},
		{"bad k", []string{"gateway", "--backend", "http://127.0.0.1:1", "--k", "0"}, "gateway.k"},
		{"bad scheduler", []string{"gateway", "--backend", "http://127.0.0.1:1", "--scheduler", "fast"}, "gateway.scheduler"},
		{"unknown flag", []string{"gateway", "--bogus"}, "unknown flag"},
		{"bad config", []string{"gateway", "-c", badCfg, "--backend", "http://127.0.0.1:1"}, "gateway.quorum"},
		{"tls half", []string{"gateway", "--backend", "http://127.0.0.1:1", "--tls-cert", "c.pem"}, "gateway.tls"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %s", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Errorf("stderr %q does not mention %q", errb.String(), tc.want)
			}
		})
	}
}

func TestGatewayServesAndExportsMetrics(t *testing.T) {
	var urls []string
	for _, body := range []string{"same\n", "same\n", "tampered\n"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		urls = append(urls, "http://"+ln.Addr().String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	old := gatewayContext
	gatewayContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { gatewayContext = old }()

	pr, pw := io.Pipe()
	var errb bytes.Buffer
	done := make(chan int)
	go func() {
		args := []string{"gateway", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"}
		for _, u := range urls {
			args = append(args, "--backend", u)
		}
		done <- run(args, pw, &errb)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var gwURL, metricsURL string
	for (gwURL == "" || metricsURL == "") && sc.Scan() {
		line := sc.Text()
		if m := regexp.MustCompile(`metrics on (\S+)`).FindStringSubmatch(line); m != nil {
			metricsURL = m[1]
		}
		if m := regexp.MustCompile(`listening on (\S+),`).FindStringSubmatch(line); m != nil {
			gwURL = m[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if gwURL == "" || metricsURL == "" {
		t.Fatalf("no addresses printed; stderr %s", errb.String())
	}
	resp, err := http.Get(gwURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "same\n" {
		t.Fatalf("gateway answered %d %q", resp.StatusCode, body)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "dissent") || !strings.Contains(errb.String(), "component=mimic") {
		t.Errorf("dissent not logged: %s", errb.String())
	}
}

func TestGatewayMetricsEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") })}
	go srv.Serve(ln)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	old := gatewayContext
	gatewayContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { gatewayContext = old }()
	pr, pw := io.Pipe()
	done := make(chan int)
	go func() {
		done <- run([]string{"gateway", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--backend", "http://" + ln.Addr().String(), "--k", "1"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var gwURL, metricsURL string
	for (gwURL == "" || metricsURL == "") && sc.Scan() {
		if m := regexp.MustCompile(`metrics on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			metricsURL = m[1]
		}
		if m := regexp.MustCompile(`listening on (\S+),`).FindStringSubmatch(sc.Text()); m != nil {
			gwURL = m[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if r, err := http.Get(gwURL + "/"); err == nil {
		r.Body.Close()
	}
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	<-done
	for _, name := range []string{"proteus_gateway_requests_total", "proteus_gateway_request_duration_seconds_bucket", "go_goroutines"} {
		if !strings.Contains(string(text), name) {
			t.Errorf("metrics lack %s", name)
		}
	}
}
