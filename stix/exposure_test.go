package stix

import (
	"net/netip"
	"testing"
)

func TestExposureMatch(t *testing.T) {
	linuxSSH := Exposure{OS: "linux", Software: []Software{{Name: "openssh", Version: "9.6p1"}}, Services: []Service{{Port: 22}}}
	attacker := AddrTarget(netip.MustParseAddr("203.0.113.7"))
	tests := []struct {
		name   string
		report Exposure
		target Target
		own    Exposure
		want   bool
	}{
		{"port exposed, same os", linuxSSH, PortTarget(22), Exposure{OS: "Linux", Services: []Service{{Port: 22}}}, true},
		{"port exposed, os unknown here", linuxSSH, PortTarget(22), Exposure{Services: []Service{{Port: 22}}}, true},
		{"port exposed, other os", linuxSSH, PortTarget(22), Exposure{OS: "windows", Services: []Service{{Port: 22}}}, false},
		{"port not exposed", linuxSSH, PortTarget(22), Exposure{OS: "linux", Services: []Service{{Port: 443}}}, false},
		{"attacker, same os", linuxSSH, attacker, Exposure{OS: " LINUX "}, true},
		{"attacker, same software any version", Exposure{Software: []Software{{Name: "OpenSSH"}}}, attacker, Exposure{Software: []Software{{Name: "openssh", Version: "8.0"}}}, true},
		{"attacker, same software same version", linuxSSH, attacker, Exposure{OS: "bsd", Software: []Software{{Name: "openssh", Version: "9.6P1"}}}, true},
		{"attacker, same software other version", linuxSSH, attacker, Exposure{OS: "bsd", Software: []Software{{Name: "openssh", Version: "8.0"}}}, false},
		{"attacker, same port", linuxSSH, attacker, Exposure{OS: "windows", Services: []Service{{Port: 22, Protocol: "tcp"}}}, true},
		{"attacker, nothing shared", linuxSSH, attacker, Exposure{OS: "windows", Services: []Service{{Port: 3389}}}, false},
		{"empty report", Exposure{}, attacker, linuxSSH, false},
		{"empty own", linuxSSH, attacker, Exposure{}, false},
		{"empty names never match", Exposure{OS: " "}, attacker, Exposure{OS: " "}, false},
		{"invalid target", linuxSSH, Target{}, linuxSSH, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := tc.report.Match(tc.target, tc.own)
			if got != tc.want || why == "" {
				t.Fatalf("Match = %v (%s), want %v", got, why, tc.want)
			}
			if tc.report.Matches(tc.target, tc.own) != got {
				t.Fatal("Matches disagrees with Match")
			}
		})
	}
}
