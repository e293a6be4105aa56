package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/config"
)

// The helpers in this file are shared by the subcommands: the -o flag, JSON and table
// output, the --api flag of the commands that talk to a running agent, and the logger and
// the context of the long-running ones, the metrics server of the standalone gateways.

// formatFlag adds -o/--output to c, stored in p: human (the default, "table" or "text") or
// json. checkFormat rejects any other value.
func formatFlag(c *cobra.Command, p *string, human string) {
	c.Flags().StringVarP(p, "output", "o", human, "output format: "+human+" or json")
}

// checkFormat rejects an -o value other than human or json as a usage error.
func checkFormat(o, human string) error {
	if o != human && o != "json" {
		return fmt.Errorf("%w: -o must be %s or json, got %q", errUsage, human, o)
	}
	return nil
}

// outputFlag adds -o text|json, the choice of the enclave commands.
func outputFlag(c *cobra.Command) *string {
	o := new(string)
	formatFlag(c, o, "text")
	return o
}

// checkOutput rejects an -o value other than text or json.
func checkOutput(o string) error { return checkFormat(o, "text") }

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable returns the tab writer every table output uses; Flush it at the end.
func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// dataDirFor is the data directory of a command that runs from cfg: --data-dir when given,
// else the config's data_dir, else the default.
func dataDirFor(cmd *cobra.Command, cfg *config.Config) string {
	if cfg.DataDir != "" && !cmd.Flags().Changed("data-dir") && !cmd.Root().PersistentFlags().Changed("data-dir") {
		return cfg.DataDir
	}
	return globals.dataDir
}

// apiFlag adds --api, the running agent's API address, stored in p; empty means the address
// the agent wrote to the data dir (api.NewClient reads it).
func apiFlag(c *cobra.Command, p *string) {
	c.Flags().StringVar(p, "api", "", "agent API host:port or unix:PATH (default: the agent's socket DATA-DIR/api.sock when it serves one, else the address it wrote to the data dir)")
}

// newLogger returns the logger of a long-running command, writing to w with the config's
// log level (info when it does not parse) and format (json or text).
func newLogger(w io.Writer, l config.Log) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.Level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// untilSignal returns a context that ends with parent or at SIGINT or SIGTERM, the context a
// long-running command runs under.
func untilSignal(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// serveMetrics serves reg's /metrics and health at /healthz on addr (and /debug/pprof/ when
// pprof) for the standalone gateways, says so on cmd's output, and returns a close function
// and a channel that gets the server's error if it stops by itself.
func serveMetrics(cmd *cobra.Command, addr string, reg *prometheus.Registry, health http.Handler, pprofToo bool) (func(), <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/healthz", health)
	if pprofToo {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("metrics: %w", err)
		}
	}()
	fmt.Fprintf(cmd.OutOrStdout(), "metrics on http://%s/metrics (health: /healthz)\n", ln.Addr())
	return func() { srv.Close() }, errc, nil
}
