package enclave

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/atomicfile"
	"github.com/proteus-defense/proteus/bearer"
	"github.com/proteus-defense/proteus/countermeasure"
)

// ControlFile is where a running node writes its control API address and token (mode 0600).
const ControlFile = "enclave-control.json"

// ControlInfo is the content of ControlFile.
type ControlInfo struct {
	Addr  string `json:"addr"`
	Token string `json:"token"`
	PID   int    `json:"pid"`
	Peer  string `json:"peer"`
}

// ErrControl marks a request the control API refused as invalid (HTTP 400).
var ErrControl = errors.New("enclave: control request rejected")

// PublishResult is the control API's answer to a publish.
type PublishResult struct {
	Indicator   string         `json:"indicator"`
	Target      string         `json:"target"`
	PublishedAt time.Time      `json:"published_at"`
	Expires     time.Time      `json:"expires"`
	Decision    DecisionRecord `json:"decision"`
}

type publishBody struct {
	Target      string `json:"target"`
	Confidence  int    `json:"confidence,omitempty"`
	TTL         string `json:"ttl,omitempty"`
	Action      string `json:"action,omitempty"`
	Description string `json:"description,omitempty"`
}

type revokeBody struct {
	Indicator string `json:"indicator"`
	Reason    string `json:"reason,omitempty"`
}

// ServeControl serves the control API on addr (loopback) until ctx is done, and writes
// ControlFile into the data directory so `proteus enclave` subcommands can find it. Every
// request must carry "Authorization: Bearer TOKEN".
func (n *Node) ServeControl(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("enclave: control: %w", err)
	}
	tok, err := bearer.NewToken()
	if err != nil {
		ln.Close()
		return "", fmt.Errorf("enclave: control token: %w", err)
	}
	info := ControlInfo{Addr: ln.Addr().String(), Token: tok, PID: os.Getpid(), Peer: n.self.String()}
	data, _ := json.MarshalIndent(info, "", "  ")
	if err := atomicfile.Write(filepath.Join(n.dataDir, ControlFile), data, 0o600); err != nil {
		ln.Close()
		return "", err
	}
	srv := &http.Server{Handler: n.controlHandler(info.Token), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = os.Remove(filepath.Join(n.dataDir, ControlFile))
	}()
	go func() { _ = srv.Serve(ln) }()
	return info.Addr, nil
}

// controlHandler is ControlAPI behind the bearer token of the node's control file.
func (n *Node) controlHandler(token string) http.Handler {
	mux := n.ControlAPI()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearer.Valid(r, token) {
			writeErr(w, http.StatusUnauthorized, errors.New("missing or wrong token"))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// ControlAPI is the control API's routes (/v1/status, /v1/publish, ...) without
// authentication, for a server that authenticates the caller itself: the agent serves it
// behind its own API token under /api/v1/enclave/node/.
func (n *Node) ControlAPI() http.Handler {
	mux := http.NewServeMux()
	get := func(path string, f func(r *http.Request) any) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, f(r)) })
	}
	get("/v1/status", func(*http.Request) any { return n.Status() })
	get("/v1/peers", func(*http.Request) any { return n.Peers() })
	get("/v1/trust", func(*http.Request) any { return n.trust.Snapshot() })
	get("/v1/decisions", func(r *http.Request) any {
		d := n.Decisions(r.URL.Query().Get("indicator"))
		if d == nil {
			d = []DecisionRecord{}
		}
		return d
	})
	get("/v1/actions", func(*http.Request) any {
		if n.manager == nil {
			return []countermeasure.Action{}
		}
		return n.manager.Active()
	})
	mux.HandleFunc("POST /v1/publish", func(w http.ResponseWriter, r *http.Request) {
		var b publishBody
		if err := decodeBody(r, &b); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		req := PublishRequest{Target: b.Target, Confidence: b.Confidence, Action: b.Action, Description: b.Description}
		if b.TTL != "" {
			d, err := time.ParseDuration(b.TTL)
			if err != nil {
				writeErr(w, http.StatusBadRequest, fmt.Errorf("ttl: %w", err))
				return
			}
			req.TTL = d
		}
		at := time.Now()
		s, rec, err := n.Publish(r.Context(), req)
		if err != nil {
			writeRequestErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, PublishResult{Indicator: s.ID, Target: s.Target.String(), PublishedAt: at,
			Expires: s.ValidUntil, Decision: rec})
	})
	get("/v1/members/revoked", func(*http.Request) any {
		if l := n.MemberRevocationList(); l != nil {
			return l
		}
		return map[string]any{}
	})
	mux.HandleFunc("POST /v1/members/revoked", func(w http.ResponseWriter, r *http.Request) {
		data, err := io.ReadAll(io.LimitReader(r.Body, 256<<10))
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		l, err := DecodeMemberRevocations(data)
		if err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		adopted, err := n.RevokeMembers(r.Context(), l)
		if err != nil {
			writeRequestErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, RevokeMembersResult{Adopted: adopted, Serial: l.Serial, Revoked: len(l.Peers)})
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var b revokeBody
		if err := decodeBody(r, &b); err != nil {
			writeErr(w, http.StatusBadRequest, err)
			return
		}
		if err := n.Revoke(r.Context(), b.Indicator, b.Reason); err != nil {
			writeRequestErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"revoked": b.Indicator})
	})
	return mux
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeRequestErr answers 400 for a request the node refused as invalid, 500 otherwise.
func writeRequestErr(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrInvalidRequest) {
		code = http.StatusBadRequest
	}
	writeErr(w, code, err)
}

func writeErr(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// Client talks to a running node's control API.
type Client struct {
	info ControlInfo
	base string // the URL that stands for /v1 in the control API's paths
	http *http.Client
}

// Dial reads ControlFile from dataDir.
func Dial(dataDir string) (*Client, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, ControlFile))
	if err != nil {
		return nil, fmt.Errorf("enclave: no running node for data dir %s (start `proteus enclave run`): %w", dataDir, err)
	}
	var info ControlInfo
	if err := json.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("enclave: %s: %w", ControlFile, err)
	}
	return &Client{info: info, base: "http://" + info.Addr + "/v1", http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// NewClientAt talks to the control API at base, a URL that stands for /v1 in its paths
// (base/status for /v1/status), with token, through hc: the agent's API serves its node's
// control API under a prefix of its own.
func NewClientAt(base, token string, hc *http.Client) *Client {
	return &Client{info: ControlInfo{Addr: base, Token: token}, base: strings.TrimRight(base, "/"), http: hc}
}

// Info is what the client connects to.
func (c *Client) Info() ControlInfo { return c.info }

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+strings.TrimPrefix(path, "/v1"), rd)
	if err != nil {
		return fmt.Errorf("enclave: %w", err)
	}
	bearer.Set(req, c.info.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("enclave: control %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("enclave: control %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(data, &e)
		if resp.StatusCode == http.StatusBadRequest {
			return fmt.Errorf("%w: %s", ErrControl, e.Error)
		}
		return fmt.Errorf("enclave: control %s: %s: %s", path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("enclave: control %s: %w", path, err)
	}
	return nil
}

// Status fetches /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// Peers fetches /v1/peers.
func (c *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	var p []PeerInfo
	return p, c.do(ctx, http.MethodGet, "/v1/peers", nil, &p)
}

// Trust fetches /v1/trust.
func (c *Client) Trust(ctx context.Context) ([]PeerTrust, error) {
	var t []PeerTrust
	return t, c.do(ctx, http.MethodGet, "/v1/trust", nil, &t)
}

// Decisions fetches /v1/decisions, optionally for one indicator.
func (c *Client) Decisions(ctx context.Context, indicator string) ([]DecisionRecord, error) {
	var d []DecisionRecord
	path := "/v1/decisions"
	if indicator != "" {
		path += "?indicator=" + indicator
	}
	return d, c.do(ctx, http.MethodGet, path, nil, &d)
}

// Actions fetches the active countermeasures.
func (c *Client) Actions(ctx context.Context) ([]countermeasure.Action, error) {
	var a []countermeasure.Action
	return a, c.do(ctx, http.MethodGet, "/v1/actions", nil, &a)
}

// Publish asks the node to publish a sighting.
func (c *Client) Publish(ctx context.Context, target string, confidence int, ttl time.Duration, action, desc string) (PublishResult, error) {
	var r PublishResult
	b := publishBody{Target: target, Confidence: confidence, Action: action, Description: desc}
	if ttl != 0 {
		b.TTL = ttl.String()
	}
	return r, c.do(ctx, http.MethodPost, "/v1/publish", b, &r)
}

// RevokeMembersResult is the control API's answer to a member revocation list.
type RevokeMembersResult struct {
	Adopted bool   `json:"adopted"` // newer than the list the node held
	Serial  uint64 `json:"serial"`
	Revoked int    `json:"revoked"`
}

// RevokeMembers hands a signed member revocation list to the node, which adopts and
// publishes it if it is newer than the one it holds.
func (c *Client) RevokeMembers(ctx context.Context, l *MemberRevocations) (RevokeMembersResult, error) {
	var r RevokeMembersResult
	return r, c.do(ctx, http.MethodPost, "/v1/members/revoked", json.RawMessage(l.Marshal()), &r)
}

// Revoke asks the node to revoke one of its sightings.
func (c *Client) Revoke(ctx context.Context, indicator, reason string) error {
	var out map[string]string
	return c.do(ctx, http.MethodPost, "/v1/revoke", revokeBody{Indicator: indicator, Reason: reason}, &out)
}
