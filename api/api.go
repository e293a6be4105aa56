// Package api owns the agent's local control API: status, rotate and quarantine of executors,
// Prometheus metrics (/metrics) and a server-sent event stream of the bus (/events). Every
// endpoint requires the bearer token that the agent writes into its data directory (mode
// 0600) at start, so only a user who can read the data directory controls the agent. The
// package also holds the client the CLI uses.
//
// It imports executor (for the pool's types), bus and the Prometheus client; it must not
// import mimic, engine, enclave or cmd.
package api

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

// File names in the data directory.
const (
	TokenFile = "api.token" // the bearer token, mode 0600
	AddrFile  = "api.addr"  // the address the API listens on, for CLI clients
)

// Controller is what the API controls: *executor.Pool implements it.
type Controller interface {
	Members() []executor.MemberStatus
	Rotate(ctx context.Context, id string) error
	RotateAll(ctx context.Context) error
	Quarantine(ctx context.Context, id string) error
	CStar() int
	RotationRate() float64
}

// ExecutorStatus is one executor in the status answer.
type ExecutorStatus struct {
	ID          string            `json:"id"`
	Variant     string            `json:"variant"`
	Address     string            `json:"address"`
	AgeSeconds  float64           `json:"age_s"`
	State       string            `json:"state"`
	Driver      string            `json:"driver"`
	InFlight    int64             `json:"in_flight"`
	ImageDigest string            `json:"image_digest,omitempty"`
	Traits      map[string]string `json:"traits,omitempty"`
}

// Status is the answer of GET /v1/status.
type Status struct {
	Executors    []ExecutorStatus `json:"executors"`
	CStar        int              `json:"cstar"`
	RotationRate float64          `json:"rotation_rate"`
}

// Server serves the API.
type Server struct {
	ctl   Controller
	bus   *bus.Bus
	token string
	reg   *prometheus.Registry
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewServer returns the API handler. reg holds the metrics served at /metrics.
func NewServer(ctl Controller, b *bus.Bus, token string, reg *prometheus.Registry, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{ctl: ctl, bus: b, token: token, reg: reg, log: logger.With("component", "api"), mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("POST /v1/rotate", s.rotate)
	s.mux.HandleFunc("POST /v1/quarantine", s.quarantine)
	s.mux.HandleFunc("GET /events", s.events)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return s
}

// ServeHTTP checks the bearer token, then dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proteus"`)
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token (see "+TokenFile+" in the data dir)"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := Status{Executors: []ExecutorStatus{}, CStar: s.ctl.CStar(), RotationRate: s.ctl.RotationRate()}
	for _, m := range s.ctl.Members() {
		st.Executors = append(st.Executors, ExecutorStatus{
			ID: m.Instance.ID, Variant: m.Instance.Variant, Address: m.Instance.Address, AgeSeconds: m.Age.Seconds(),
			State: string(m.State), Driver: m.Instance.Driver, InFlight: m.InFlight, ImageDigest: m.Instance.ImageDigest, Traits: m.Instance.Traits,
		})
	}
	writeJSON(w, http.StatusOK, st)
}

// RotateResult is the answer of POST /v1/rotate and /v1/quarantine.
type RotateResult struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func (s *Server) rotate(w http.ResponseWriter, r *http.Request) {
	id, all := r.URL.Query().Get("id"), r.URL.Query().Get("all") == "true"
	if (id == "") == !all {
		writeError(w, http.StatusBadRequest, errors.New("give exactly one of id=ID or all=true"))
		return
	}
	ctx := executor.WithReason(r.Context(), "api")
	var err error
	if all {
		err = s.ctl.RotateAll(ctx)
	} else {
		err = s.ctl.Rotate(ctx, id)
	}
	s.log.Info("rotate requested", "id", id, "all", all, "err", err)
	s.answer(w, err)
}

func (s *Server) quarantine(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	if id == "" {
		writeError(w, http.StatusBadRequest, errors.New("id=ID is required"))
		return
	}
	err := s.ctl.Quarantine(executor.WithReason(r.Context(), "api"), id)
	s.log.Warn("quarantine requested", "id", id, "err", err)
	s.answer(w, err)
}

func (s *Server) answer(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, RotateResult{OK: true})
	case errors.Is(err, executor.ErrNoInstance):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, executor.ErrBusy):
		writeError(w, http.StatusConflict, err)
	default:
		writeError(w, http.StatusInternalServerError, err)
	}
}

// heartbeat keeps idle event streams from being cut by proxies.
const heartbeat = 15 * time.Second

// events streams bus events as server-sent events: "event: <kind>" and "data: <json>".
// ?kind=PREFIX filters by kind prefix.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	var filter func(bus.Event) bool
	if k := r.URL.Query().Get("kind"); k != "" {
		filter = bus.KindPrefix(k)
	}
	ch, cancel := s.bus.Subscribe(256, filter)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": proteus events\n\n")
	fl.Flush()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
			fmt.Fprint(w, ": keep-alive\n\n")
		case e, ok := <-ch:
			if !ok {
				return
			}
			data, err := json.Marshal(e)
			if err != nil {
				continue
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.Kind, data)
		}
		fl.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, RotateResult{Error: err.Error()})
}

// NewToken creates a fresh random token, writes it to dataDir/api.token with mode 0600 and
// returns it. Every agent start makes a new one, so a token never outlives its agent.
func NewToken(dataDir string) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	tok := hex.EncodeToString(b[:])
	if err := writePrivate(filepath.Join(dataDir, TokenFile), tok+"\n"); err != nil {
		return "", fmt.Errorf("api: token: %w", err)
	}
	return tok, nil
}

// WriteAddr records where the API listens, for CLI clients.
func WriteAddr(dataDir, addr string) error {
	if err := writePrivate(filepath.Join(dataDir, AddrFile), addr+"\n"); err != nil {
		return fmt.Errorf("api: address file: %w", err)
	}
	return nil
}

// writePrivate replaces path atomically with a 0600 file.
func writePrivate(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
