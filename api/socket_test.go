package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The socket is 0600, clients find it in the data dir without an address file, the Host they
// send is localhost, and a request over it names the peer's uid.
func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	ln, err := ListenUnix(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, SocketFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v %v, want a 0600 socket", fi, err)
	}
	var host, who string
	srv := &http.Server{ConnContext: ConnContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, who = r.Host, requester(r)
		writeJSON(w, http.StatusOK, Status{Executors: []ExecutorStatus{}, CStar: 7})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if err := os.WriteFile(filepath.Join(dir, TokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(dir, "") // no api.addr: only the socket can answer
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil || st.CStar != 7 {
		t.Fatalf("status over the socket: %+v %v", st, err)
	}
	if want := "API token from the unix socket (uid " + strconv.Itoa(os.Getuid()) + ")"; host != "localhost" || who != want {
		t.Errorf("host %q, requester %q; want localhost and %q", host, who, want)
	}
	// The TCP client does not use it.
	if _, err := NewTCPClient(dir, ""); err == nil || !strings.Contains(err.Error(), "no API address") {
		t.Errorf("TCP client without api.addr: %v", err)
	}
	// An explicit unix: address works too.
	c2, err := NewClient(dir, "unix:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Status(context.Background()); err != nil {
		t.Errorf("status over unix:%s: %v", path, err)
	}
}

func TestListenUnixRefusals(t *testing.T) {
	dir := t.TempDir()
	// Something that is not a socket stays, and is an error.
	if err := os.WriteFile(filepath.Join(dir, SocketFile), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(dir); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, SocketFile)); string(b) != "keep" {
		t.Error("the regular file was replaced")
	}
	// A socket a dead agent left is replaced.
	dir2 := t.TempDir()
	ln, err := ListenUnix(dir2)
	if err != nil {
		t.Fatal(err)
	}
	ln.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	ln.Close()
	ln2, err := ListenUnix(dir2)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	ln2.Close()
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := ListenUnix(long); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a too long path: %v", err)
	}
	if _, err := ListenUnix(filepath.Join(dir, "missing")); err == nil {
		t.Error("listening in a missing dir worked")
	}
}
