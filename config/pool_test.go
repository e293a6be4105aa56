package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseEvery(t *testing.T) {
	cases := []struct {
		in     string
		lo, hi time.Duration
		err    string
	}{
		{"30s-90s", 30 * time.Second, 90 * time.Second, ""},
		{"45s", 45 * time.Second, 45 * time.Second, ""},
		{" 1s - 2s ", time.Second, 2 * time.Second, ""},
		{"1m30s-2h", 90 * time.Second, 2 * time.Hour, ""},
		{"90s-30s", 0, 0, "ends before it starts"},
		{"10ms", 0, 0, "at least"},
		{"soon", 0, 0, "want DURATION"},
		{"1s-", 0, 0, "want DURATION"},
		{"", 0, 0, "want DURATION"},
	}
	for _, c := range cases {
		lo, hi, err := ParseEvery(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseEvery(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || lo != c.lo || hi != c.hi {
			t.Errorf("ParseEvery(%q) = %v, %v, %v", c.in, lo, hi, err)
		}
	}
}

func TestCheckCron(t *testing.T) {
	for in, ok := range map[string]bool{
		"*/5 * * * *": true, "0 3 * * MON-FRI": true, "@hourly": true, "@every 90s": true,
		"* * * *": false, "@sometimes": false, "@every 1ms": false, "* * * * $": false,
	} {
		if err := checkCron(in); (err == nil) != ok {
			t.Errorf("checkCron(%q) = %v", in, err)
		}
	}
}

func TestPoolDefaults(t *testing.T) {
	c, err := Parse("p.yaml", []byte("version: 1\npool:\n  redraw: off\n  variants: [{name: a, image: /img, command: [x]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Pool
	if p.Desired != 3 || p.Min != 3 || p.MaxConcurrent != 1 || p.RedrawEnabled() || p.Grace != 5*time.Second ||
		p.Variants[0].Driver != "process" || p.Variants[0].HealthPath != "/healthz" || p.Health.Failures != 3 {
		t.Fatalf("defaults: %+v", p)
	}
}

func TestDefaultPoolIsTheBuiltinDemo(t *testing.T) {
	p := Default().Pool
	if len(p.Variants) < 3 || !p.RedrawEnabled() || p.Rotation.Every == "" {
		t.Fatalf("default pool: %+v", p)
	}
	for _, v := range p.Variants {
		if v.Image != BuiltinDemoImage || v.Command[0] != "{{.Self}}" {
			t.Errorf("variant %s needs something installed: %+v", v.Name, v)
		}
	}
}

func FuzzParseEvery(f *testing.F) {
	for _, s := range []string{"30s-90s", "1s", "1h-1m", "-", "1s--2s", "9223372036s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParseEvery(s)
		if err == nil && (lo < MinEvery || hi < lo) {
			t.Fatalf("ParseEvery(%q) = %v, %v", s, lo, hi)
		}
	})
}

func TestIsolationDefaults(t *testing.T) {
	c, err := Parse("p.yaml", []byte("version: 1\npool:\n  variants: [{name: a, image: /img, command: [x]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	iso := c.Pool.Isolation
	if iso.Mode != "auto" || iso.UIDs != DefaultIsolationUIDs || iso.Memory != 512<<20 || iso.Processes != 256 ||
		iso.OpenFiles != 4096 || iso.CPU != 1 || c.Pool.Variants[0].AllowOutbound {
		t.Fatalf("isolation defaults: %+v", iso)
	}
}

func TestParseUIDRange(t *testing.T) {
	cases := []struct {
		in           string
		first, count int
		err          string
	}{
		{"600000-600999", 600000, 1000, ""},
		{" 70000 - 70000 ", 70000, 1, ""},
		{"999-2000", 0, 0, "below 1000"},
		{"5000-4000", 0, 0, "ends before"},
		{"5000-2147483647", 0, 0, "above"},
		{"5000", 0, 0, "want FIRST-LAST"},
		{"a-b", 0, 0, "want FIRST-LAST"},
		{"-5-10", 0, 0, "want FIRST-LAST"},
	}
	for _, c := range cases {
		first, count, err := ParseUIDRange(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseUIDRange(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || first != c.first || count != c.count {
			t.Errorf("ParseUIDRange(%q) = %d, %d, %v", c.in, first, count, err)
		}
	}
}

func FuzzParseUIDRange(f *testing.F) {
	for _, s := range []string{"600000-600999", "1000-1000", "0-0", "9999999999-1", "1-", "-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, count, err := ParseUIDRange(s)
		if err == nil && (first < 1000 || count < 1 || first+count-1 > 1<<31-2) {
			t.Fatalf("ParseUIDRange(%q) = %d, %d", s, first, count)
		}
	})
}

// A DNS pool of servers in containers: valid with each server's port, rendered files (the
// process driver's own names, such as state/, are free in a container's /etc/proteus) and a
// variant of its own; the bad ones are in testdata/bad (pool-dns-*).
func TestDockerDNSPool(t *testing.T) {
	const pin = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	variant := func(name string) string {
		return `    - name: ` + name + `
      driver: docker
      image: ` + name + pin + `
      container_port: 53
      command: [-c, "{{.Files}}/` + name + `.conf"]
      files: {` + name + `.conf: "listen {{.IP}}@{{.Port}}\n", zone: "$ORIGIN example.org.\n", state/keys.conf: "# the process driver's name, not docker's\n"}
`
	}
	c, err := Parse("dns-docker.yaml", []byte(`version: 1
dns: {k: 3}
pool:
  protocol: dns
  health: {query: "www.example.org. A"}
  variants:
`+variant("nsd")+variant("knot")+variant("unbound")))
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Pool.Variants[1]; v.Driver != "docker" || v.ContainerPort != 53 || v.HealthQuery != "www.example.org. A" || len(v.Files) != 3 {
		t.Errorf("variant: %+v", v)
	}
}
