// Command httpserver is the tiny static HTTP server the docker driver's tests put into a
// FROM scratch image. It answers / with its variant name, /healthz with "ok", and /probe
// with what it can do from inside the container (write the root fs? write /tmp? uid?), so
// tests see the hardening from the inside as well as through inspect. /attack?what=...
// behaves as a compromised executor would (see attack); -sleep makes it an idle child.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/proteus-defense/proteus/executor/internal/hostile"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	variant := flag.String("variant", "test", "name reported on /")
	sleep := flag.Bool("sleep", false, "do nothing until killed (a child of the fork attack)")
	flag.Parse()
	if *sleep {
		select {}
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", *variant)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/probe", func(w http.ResponseWriter, r *http.Request) {
		res := map[string]any{"uid": os.Getuid()}
		if err := os.WriteFile("/pwned", []byte("x"), 0o644); err != nil {
			res["root_write_error"] = err.Error()
		} else {
			res["root_writable"] = true
		}
		if err := os.WriteFile("/tmp/scratch", []byte("x"), 0o644); err != nil {
			res["tmp_write_error"] = err.Error()
		} else {
			res["tmp_writable"] = true
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("/attack", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, hostile.Attack(r.URL.Query(), []string{"/proc/self/exe", "-sleep"}))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
