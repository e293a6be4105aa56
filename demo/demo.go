// Package demo owns Proteus's demonstration web service: a small site (a few pages, /healthz
// and a read-only JSON API under /api/) embedded in the binary, and several independent HTTP
// server implementations that serve it byte for byte identically. The agent's embedded default
// configuration writes the site out as a process image and runs one executor per
// implementation, so a fresh checkout shows mimic voting and moving target defense with nothing
// installed.
//
// Implementations: "nethttp" (net/http), "fasthttp" (github.com/valyala/fasthttp), "raw" (a
// minimal HTTP/1.1 server written here on net.Listener), and "nginx" / "lighttpd", which
// generate a configuration file in the executor's work directory and replace the current
// process with the installed server.
//
// It imports only the standard library and fasthttp; it must not import executor, mimic, mtd,
// api or cmd.
package demo

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

//go:embed site
var siteFS embed.FS

// Site returns the embedded demo site as a file system rooted at the site directory.
func Site() fs.FS {
	sub, err := fs.Sub(siteFS, "site")
	if err != nil {
		panic(fmt.Sprintf("demo: embedded site: %v", err))
	}
	return sub
}

// WriteSite copies the embedded site into dir (created with mode 0755), files with mode 0644.
func WriteSite(dir string) error {
	site := Site()
	return fs.WalkDir(site, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fmt.Errorf("demo: write site: %w", err)
			}
			return nil
		}
		data, err := fs.ReadFile(site, p)
		if err != nil {
			return fmt.Errorf("demo: write site: %w", err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("demo: write site: %w", err)
		}
		return nil
	})
}

// Implementations lists the values --impl accepts.
func Implementations() []string {
	return []string{"nethttp", "fasthttp", "raw", "nginx", "lighttpd"}
}

// notFoundBody is the body every Go implementation sends for a missing path.
const notFoundBody = "404 page not found\n"

// resolve maps a request path to a regular file below root and its content type. Every Go
// implementation calls it, so they agree on which path serves which bytes. ok is false when
// nothing should be served (the caller answers 404).
func resolve(root, urlPath string) (file, contentType string, ok bool) {
	if strings.IndexByte(urlPath, 0) >= 0 || !strings.HasPrefix(urlPath, "/") {
		return "", "", false
	}
	clean := path.Clean(urlPath)
	if clean == "/" {
		clean = "/index.html"
	}
	file = filepath.Join(root, filepath.FromSlash(clean))
	st, err := os.Stat(file)
	if err != nil || !st.Mode().IsRegular() {
		return "", "", false
	}
	return file, typeOf(clean), true
}

// typeOf is the content type of a site path.
func typeOf(p string) string {
	switch {
	case strings.HasPrefix(p, "/api/"):
		return "application/json"
	case strings.HasSuffix(p, ".html"):
		return "text/html; charset=utf-8"
	case strings.HasSuffix(p, ".css"):
		return "text/css; charset=utf-8"
	case p == "/healthz":
		return "text/plain; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}
