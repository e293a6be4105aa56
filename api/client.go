package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/proteus-defense/proteus/bearer"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/countermeasure"
	"github.com/proteus-defense/proteus/dashboard"
	"github.com/proteus-defense/proteus/store"
)

// ErrNoAgent is returned by NewClient when the data directory holds no token: no agent has
// started with it.
var ErrNoAgent = errors.New("api: no agent token in the data dir (is `proteus agent` running with the same --data-dir?)")

// ErrUnreachable is returned by the client's calls when nothing answers at the agent's
// address: the agent is not running (or was killed and left its address behind), or --api
// names the wrong address.
var ErrUnreachable = errors.New("api: no agent answers")

// Client talks to a running agent's API.
type Client struct {
	base  string
	addr  string // what the client dials, for errors: host:port or unix:PATH
	token string
	http  *http.Client
}

// Addr is the address the client talks to: host:port, a URL, or unix:PATH.
func (c *Client) Addr() string { return c.addr }

// NewClient reads the token from dataDir and talks to the agent at addr: host:port, a URL,
// or unix:PATH for a unix socket. With addr empty it uses the agent's socket
// (DATA-DIR/api.sock, when the agent serves one: api.socket) or else the TCP address the agent
// wrote to the data dir.
func NewClient(dataDir, addr string) (*Client, error) {
	return newClient(dataDir, addr, true)
}

// NewTCPClient is NewClient without the unix socket: for what hands out a URL a browser
// opens (the dashboard's login link names the address it was asked on).
func NewTCPClient(dataDir, addr string) (*Client, error) {
	return newClient(dataDir, addr, false)
}

func newClient(dataDir, addr string, socket bool) (*Client, error) {
	tok, err := os.ReadFile(filepath.Join(dataDir, TokenFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNoAgent, dataDir)
		}
		return nil, fmt.Errorf("api: %w", err)
	}
	if addr == "" && socket {
		if fi, err := os.Stat(filepath.Join(dataDir, SocketFile)); err == nil && fi.Mode()&os.ModeSocket != 0 {
			addr = "unix:" + filepath.Join(dataDir, SocketFile)
		}
	}
	if addr == "" {
		a, err := os.ReadFile(filepath.Join(dataDir, AddrFile))
		if err != nil {
			return nil, fmt.Errorf("api: no API address (give --api): %w", err)
		}
		addr = strings.TrimSpace(string(a))
	}
	c := &Client{addr: addr, token: strings.TrimSpace(string(tok)), http: &http.Client{Timeout: 5 * time.Minute}}
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		// The Host is localhost: the dashboard in front of the API answers only for IP
		// literals, localhost and the allowed names.
		c.base = "http://localhost"
		d := net.Dialer{}
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}}
		return c, nil
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c.base = strings.TrimRight(base, "/")
	return c, nil
}

// Endpoint is what a client of another API the agent serves under path needs: the URL,
// the token and the HTTP client (over the unix socket when the client uses it).
func (c *Client) Endpoint(path string) (url, token string, hc *http.Client) {
	return c.base + path, c.token, c.http
}

// APIError is an error answer from the agent.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("api: agent answered %d: %s", e.Status, e.Msg) }

// maxErrorMsg bounds the text of an error answer the client keeps.
const maxErrorMsg = 512

// errorText is the message of an error answer as the client reports it: at most maxErrorMsg
// bytes, without control characters (what a terminal would obey), so an answer from
// something other than the agent cannot flood or forge the operator's terminal.
func errorText(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxErrorMsg {
		cut := maxErrorMsg
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// unreachable wraps a transport error: nothing answers at the client's address.
func (c *Client) unreachable(err error) error {
	return fmt.Errorf("%w at %s (is `proteus agent` running with this --data-dir? --api names another address): %v", ErrUnreachable, c.addr, err)
}

// maxAnswer bounds an answer the client reads.
const maxAnswer = 16 << 20

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	bearer.Set(req, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("api: %s %s at %s: %w", method, path, c.addr, ctx.Err())
		}
		return c.unreachable(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("api: reading the answer to %s %s from %s: %w", method, path, c.addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var r RotateResult
		if json.Unmarshal(body, &r) != nil || r.Error == "" {
			r.Error = string(body)
		}
		return &APIError{Status: resp.StatusCode, Msg: errorText(r.Error)}
	}
	if len(body) > maxAnswer {
		return fmt.Errorf("api: the answer to %s %s from %s is larger than %d MiB", method, path, c.addr, maxAnswer>>20)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("api: the answer to %s %s from %s is not what the agent sends (is it the agent?): %s", method, path, c.addr, errorText(err.Error()))
		}
	}
	return nil
}

// Status fetches the executors and the MTD figures, with β_y for the agent's attack
// intensity.
func (c *Client) Status(ctx context.Context) (*Status, error) { return c.StatusFor(ctx, 0) }

// StatusFor is Status with β_y computed for the attack intensity pi (0: the agent's).
func (c *Client) StatusFor(ctx context.Context, pi float64) (*Status, error) {
	var s Status
	var q url.Values
	if pi != 0 {
		q = url.Values{"intensity": {strconv.FormatFloat(pi, 'g', -1, 64)}}
	}
	if err := c.do(ctx, http.MethodGet, Prefix+"/status", q, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Rotate rotates one executor and waits until the rotation is done.
func (c *Client) Rotate(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, Prefix+"/rotate", url.Values{"id": {id}}, nil)
}

// RotateAll rotates every executor (at most c* at a time) and waits.
func (c *Client) RotateAll(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, Prefix+"/rotate", url.Values{"all": {"true"}}, nil)
}

// ResetLearned makes the voting gateway forget the noise it learned.
func (c *Client) ResetLearned(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, Prefix+"/gateway/learned/reset", nil, nil)
}

// Quarantine takes one executor out of service and freezes it.
func (c *Client) Quarantine(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, Prefix+"/quarantine", url.Values{"id": {id}}, nil)
}

// Actions lists the active countermeasures, sorted by ID.
func (c *Client) Actions(ctx context.Context) ([]countermeasure.Action, error) {
	var a []countermeasure.Action
	return a, c.do(ctx, http.MethodGet, Prefix+"/actions", nil, &a)
}

// Block blocks target (an address or a CIDR) at the gateway for ttl and returns the action
// as recorded; blocking it again extends the same action.
func (c *Client) Block(ctx context.Context, target string, ttl time.Duration, reason string) (countermeasure.Action, error) {
	var a countermeasure.Action
	q := url.Values{"target": {target}, "ttl": {ttl.String()}}
	if reason != "" {
		q.Set("reason", reason)
	}
	return a, c.do(ctx, http.MethodPost, Prefix+"/block", q, &a)
}

// Unblock reverts every active block on exactly target and returns what it reverted.
func (c *Client) Unblock(ctx context.Context, target string) ([]countermeasure.Action, error) {
	var r UnblockResult
	err := c.do(ctx, http.MethodPost, Prefix+"/unblock", url.Values{"target": {target}}, &r)
	return r.Reverted, err
}

// Decisions lists the engine's decisions matching q (the filters of GET /v1/decisions:
// since, source, asset, verdict, limit), oldest first, without their detail and excerpts.
func (c *Client) Decisions(ctx context.Context, q url.Values) ([]store.Decision, error) {
	var l DecisionList
	return l.Decisions, c.do(ctx, http.MethodGet, Prefix+"/decisions", q, &l)
}

// Decision fetches one decision with its whole story.
func (c *Client) Decision(ctx context.Context, id string) (store.Decision, error) {
	var d store.Decision
	return d, c.do(ctx, http.MethodGet, Prefix+"/decisions/"+url.PathEscape(id), nil, &d)
}

// RevertDecision reverts countermeasure action (its action ID) of decision id now, and the
// agent records the revert in the decision's story.
func (c *Client) RevertDecision(ctx context.Context, id, action string) (RevertResult, error) {
	var r RevertResult
	err := c.do(ctx, http.MethodPost, Prefix+"/decisions/"+url.PathEscape(id)+"/revert", url.Values{"action": {action}}, &r)
	return r, err
}

// Timeline fetches the decisions over the last since in n buckets with the top sources (0:
// the agent's defaults).
func (c *Client) Timeline(ctx context.Context, since time.Duration, n, top int) (store.Timeline, error) {
	q := url.Values{}
	if since > 0 {
		q.Set("since", since.String())
	}
	if n > 0 {
		q.Set("buckets", strconv.Itoa(n))
	}
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	var tl store.Timeline
	return tl, c.do(ctx, http.MethodGet, Prefix+"/timeline", q, &tl)
}

// MaxEventBytes bounds one event of the stream Events reads.
const MaxEventBytes = 1 << 20

// Events subscribes to the agent's event stream (GET /api/v1/events, server-sent events), the
// events whose kind starts with kind ("" for all), and delivers them on the channel until ctx
// ends or the stream does; then the channel is closed. The subscription is in place when
// Events returns. A line longer than MaxEventBytes ends the stream.
func (c *Client) Events(ctx context.Context, kind string) (<-chan bus.Event, error) {
	u := c.base + Prefix + "/events"
	if kind != "" {
		u += "?" + url.Values{"kind": {kind}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	bearer.Set(req, c.token)
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req) // no timeout: a stream
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("api: event stream at %s: %w", c.addr, ctx.Err())
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, &APIError{Status: resp.StatusCode, Msg: "event stream refused"}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), MaxEventBytes)
	// The server writes a comment line first, once it has subscribed.
	if !sc.Scan() {
		resp.Body.Close()
		return nil, fmt.Errorf("api: event stream ended at once: %v", sc.Err())
	}
	ch := make(chan bus.Event, 256)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var e bus.Event
			if json.Unmarshal([]byte(data), &e) != nil {
				continue
			}
			select {
			case ch <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// LoginLink asks the agent for a one-time dashboard login link (the dashboard package serves
// it in front of the API).
func (c *Client) LoginLink(ctx context.Context) (dashboard.LinkAnswer, error) {
	var a dashboard.LinkAnswer
	err := c.do(ctx, http.MethodPost, dashboard.LinkPath, nil, &a)
	return a, err
}
