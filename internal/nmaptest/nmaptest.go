// Package nmaptest runs `nmap -sV` for the tests that fingerprint what Proteus presents (the
// decoys, the voting gateway). Tests only; it imports the standard library.
package nmaptest

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"time"
)

// ServiceScan runs `nmap -sV -Pn -n -p PORTS host` and returns its output. nmap reads the
// machine's interfaces, then looks up the route to host: when another test adds or removes an
// interface or a labelled address in between (a veth pair, a fake host), nmap stops with
// "can't find interface". That scan is run again, up to three times in all.
func ServiceScan(ctx context.Context, host string, ports []string) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		out, err := exec.CommandContext(ctx, "nmap", "-sV", "-Pn", "-n", "-p", strings.Join(ports, ","), host).CombinedOutput()
		if err == nil || attempt == 3 || !bytes.Contains(out, []byte("can't find interface")) || ctx.Err() != nil {
			return out, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
