package decoy

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/internal/nmaptest"
)

// nmapVersions runs `nmap -sV` against the decoys on loopback and returns the service and
// version column of each open port.
func nmapVersions(t *testing.T, addrs map[string]string) map[string]string {
	t.Helper()
	var ports []string
	byPort := map[string]string{}
	for svc, a := range addrs {
		_, p, _ := net.SplitHostPort(a)
		ports = append(ports, p)
		byPort[p] = svc
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // guards a hang only
	defer cancel()
	out, err := nmaptest.ServiceScan(ctx, "127.0.0.1", ports)
	if err != nil {
		t.Fatalf("nmap: %v\n%s", err, out)
	}
	got := map[string]string{}
	line := regexp.MustCompile(`(?m)^(\d+)/tcp\s+open\s+(\S+)\s*(.*)$`)
	for _, m := range line.FindAllStringSubmatch(string(out), -1) {
		got[byPort[m[1]]] = m[2] + " " + strings.TrimSpace(m[3])
	}
	t.Logf("nmap -sV:\n%s", out)
	return got
}

// Must show: `nmap -sV` identifies each decoy as the service and version of the signal in
// force, and switching the signal from mH to mL changes what it reports. (nmap names a Redis
// decoy from its answer to an HTTP GET, as it does a real Redis off port 6379, so the version
// the INFO answer carries is checked by TestBannersFollowTheSignal.)
func TestNmapSeesTheSignalsBanners(t *testing.T) {
	if _, err := exec.LookPath("nmap"); err != nil {
		t.Skip("nmap is not installed (.ci/run installs it)")
	}
	s, _, addrs := start(t, config.Decoy{Timeout: 5 * time.Second}, allServices...)
	want := map[string]map[string][]string{
		"mH": {"ssh": {"ssh", "OpenSSH 9.6p1"}, "http": {"http", "nginx 1.26.0"}, "mysql": {"mysql", "8.0.36"},
			"redis": {"redis"}, "smtp": {"smtp", "Postfix"}},
		"mL": {"ssh": {"ssh", "OpenSSH 7.4"}, "http": {"http", "Apache httpd 2.2.15"}, "mysql": {"mysql", "5.5.62"},
			"redis": {"redis"}, "smtp": {"smtp", "Sendmail 8.14.4"}},
	}
	for _, sig := range []string{"mH", "mL"} {
		s.SetSignal("", sig)
		got := nmapVersions(t, addrs)
		for svc, parts := range want[sig] {
			for _, p := range parts {
				if !strings.Contains(got[svc], p) {
					t.Errorf("under %s nmap reports the %s decoy as %q, want it to contain %q", sig, svc, got[svc], p)
				}
			}
		}
	}
}
