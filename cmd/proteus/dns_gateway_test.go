package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDNSGatewayUsageErrors(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("version: 1\ndns:\n  udp_size: 100\n"), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no backend", []string{"dns-gateway"}, "at least one --backend"},
		{"name not address", []string{"dns-gateway", "--backend", "resolver.example:53"}, "dns.backends[0]"},
		{"weak vote", []string{"dns-gateway", "--backend", "127.0.0.1:1", "--backend", "127.0.0.1:2"}, "dns.k: k=3 is more than the 2 backends"},
		{"bad scheduler", []string{"dns-gateway", "--backend", "127.0.0.1:1", "--k", "1", "--scheduler", "fast"}, "dns.scheduler"},
		{"bad config", []string{"dns-gateway", "-c", badCfg, "--backend", "127.0.0.1:1"}, "dns.udp_size"},
	} {
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

// answerA serves one A record for every question, over UDP, on loopback.
func answerA(t *testing.T, ip string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A " + ip)
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// The command wires the front: it answers with the majority, and its metrics carry the
// proteus_dns_ series (real DNS servers are in mimic/dnsgw's tests).
func TestDNSGatewayServesAndExportsMetrics(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	old := dnsGatewayContext
	dnsGatewayContext = func(context.Context) (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { dnsGatewayContext = old })
	args := []string{"dns-gateway", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
		"--backend", answerA(t, "192.0.2.1"), "--backend", answerA(t, "192.0.2.1"), "--backend", answerA(t, "203.0.113.9")}
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- run(args, pw, &stderr); pw.Close() }()
	var addr, metrics string
	sc := bufio.NewScanner(pr)
	for (addr == "" || metrics == "") && sc.Scan() {
		if m := regexp.MustCompile(`metrics on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
			metrics = m[1]
		}
		if m := regexp.MustCompile(`listening on (\S+) `).FindStringSubmatch(sc.Text()); m != nil {
			addr = m[1]
		}
	}
	go io.Copy(io.Discard, pr)
	if addr == "" || metrics == "" {
		cancel()
		<-done
		t.Fatalf("no addresses printed; stderr %s", stderr.String())
	}
	for _, network := range []string{"udp", "tcp"} {
		c := dns.Client{Net: network, Timeout: 20 * time.Second}
		r, _, err := c.Exchange(new(dns.Msg).SetQuestion("www.example.", dns.TypeA), addr)
		if err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Fatalf("%s: %v %v", network, r, err)
		}
	}
	// The majority answers the client before the lying server's answer is in: its dissent is
	// accounted after, so wait for it rather than read the metrics once.
	var text string
	waitFor(t, "the lying server's dissent in the metrics", func() bool {
		_, text = httpGet(t, metrics)
		return strings.Contains(text, "proteus_dns_dissent_total")
	})
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d; stderr %s", code, stderr.String())
	}
	for _, name := range []string{"proteus_dns_requests_total", "proteus_dns_request_duration_seconds_bucket", "proteus_dns_dissent_total"} {
		if !strings.Contains(text, name) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if !strings.Contains(stderr.String(), "dissent") {
		t.Errorf("the lying server's dissent is not logged: %s", stderr.String())
	}
}
