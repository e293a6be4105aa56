// Package dashboard is the agent's web dashboard: embedded static assets (plain HTML, CSS and
// JavaScript, no build step, no third-party code, works offline) that read the agent's JSON
// API and its event stream, and the login that lets a browser use that API without ever
// holding the bearer token.
//
// Login: a holder of the bearer token asks for a one-time link (POST /api/v1/dashboard/login-link,
// what `proteus dashboard` prints). The link carries a random single-use code, never the token,
// valid for LinkTTL; opening it spends the code and sets a session cookie (HttpOnly,
// SameSite=Strict) that the dashboard's own requests carry. A request with a valid session
// cookie is passed to the API as if it carried the token; one that would change state must
// also come from the dashboard's own origin and carry the header CSRFHeader, which a
// cross-site form cannot send. Every response carries a strict Content-Security-Policy
// (scripts and styles only from the agent itself, no inline code), and the page renders every
// field with textContent, since paths, headers and EVE signatures come from attackers.
//
// It imports bearer and the standard library only; it must not import api, engine or cmd.
package dashboard

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/proteus-defense/proteus/bearer"
)

// Paths the dashboard owns; everything else goes to the API.
const (
	LinkPath   = "/api/v1/dashboard/login-link" // POST with the bearer token: a fresh one-time login link
	LegacyLink = "/v1/dashboard/login-link"     // LinkPath before the API was versioned, an alias
	LoginPath  = "/login"                       // GET ?code=: spend the code, set the session cookie
	LogoutPath = "/logout"                      // POST: end the session
	AssetsPath = "/ui/"                         // the embedded assets
)

// CookieName is the session cookie.
const CookieName = "proteus_session"

// CSRFHeader must be present (value "1") on a cookie-authenticated request that changes state.
const CSRFHeader = "X-Proteus-Dashboard"

// Lifetimes and bounds.
const (
	LinkTTL     = 5 * time.Minute
	SessionTTL  = 12 * time.Hour
	maxLinks    = 16
	maxSessions = 64
)

// ContentSecurityPolicy is sent with every response: nothing from elsewhere, no inline
// script or style, no framing, no form posts, no plugins.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

//go:embed assets
var assets embed.FS

// Handler serves the dashboard and passes the rest to the API.
type Handler struct {
	api    http.Handler
	token  string
	log    *slog.Logger
	now    func() time.Time
	static http.Handler

	// hosts are the host names (lower case) a request's Host may name besides an IP literal
	// and localhost.
	hosts map[string]bool

	mu       sync.Mutex
	links    map[string]time.Time // sha256(code) → expiry
	sessions map[string]time.Time // sha256(session) → expiry
}

// Option configures a Handler.
type Option func(*Handler)

// WithAllowedHosts lets requests name these host names in Host (a reverse proxy's name, say)
// besides IP literals and localhost.
func WithAllowedHosts(names ...string) Option {
	return func(h *Handler) {
		for _, n := range names {
			h.hosts[strings.ToLower(n)] = true
		}
	}
}

// New returns the handler in front of api (the agent's API handler, which checks token).
func New(api http.Handler, token string, logger *slog.Logger, opts ...Option) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	h := &Handler{api: api, token: token, log: logger.With("component", "dashboard"), now: time.Now, hosts: map[string]bool{},
		static: http.StripPrefix(AssetsPath, http.FileServerFS(sub)), links: map[string]time.Time{}, sessions: map[string]time.Time{}}
	for _, o := range opts {
		o(h)
	}
	return h
}

// hostAllowed reports whether a request's Host names this agent: an IP literal, localhost,
// or an allowed name. A DNS rebinding attack makes a browser send its own domain name here
// (its page's origin), so a page on that domain cannot read the API's answers even if it
// came by a token or a session some other way.
func (h *Handler) hostAllowed(host string) bool {
	name := host
	if hn, _, err := net.SplitHostPort(host); err == nil {
		name = hn
	}
	name = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"))
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	return name == "localhost" || h.hosts[name]
}

// ServeHTTP routes: the dashboard's own paths, then the API behind either the bearer token or
// a session cookie.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", ContentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Cache-Control", "no-store")
	if !h.hostAllowed(r.Host) {
		h.log.Warn("request for another host refused (DNS rebinding?)", "host", r.Host, "remote", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "this agent does not answer for host "+strconv.Quote(r.Host)+": use its address, or list the name in api.allowed_hosts",
			http.StatusMisdirectedRequest)
		return
	}
	switch {
	case r.URL.Path == LinkPath || r.URL.Path == LegacyLink:
		h.link(w, r)
		return
	case r.URL.Path == LoginPath:
		h.login(w, r)
		return
	}
	session := h.session(r)
	switch {
	case r.URL.Path == LogoutPath:
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if session == "" || !sameOrigin(r) {
			http.Error(w, "not logged in, or a cross-site request", http.StatusForbidden)
			return
		}
		h.mu.Lock()
		delete(h.sessions, session)
		h.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
		w.WriteHeader(http.StatusNoContent)
		return
	case r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, AssetsPath):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		if session == "" {
			unauthorized(w)
			return
		}
		if r.URL.Path == "/" {
			r2 := r.Clone(r.Context())
			r2.URL.Path = AssetsPath + "index.html"
			r = r2
		}
		if strings.HasSuffix(r.URL.Path, "/index.html") {
			// The file server would redirect /ui/index.html to /ui/; serve it straight.
			b, err := assets.ReadFile("assets/index.html")
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			hd.Set("Content-Type", "text/html; charset=utf-8")
			_, _ = w.Write(b)
			return
		}
		h.static.ServeHTTP(w, r)
		return
	}
	if session != "" && !bearer.Valid(r, h.token) {
		if !safeMethod(r.Method) && !sameOrigin(r) {
			http.Error(w, "a state-changing request with the session cookie must come from the dashboard (Origin and "+CSRFHeader+")", http.StatusForbidden)
			return
		}
		r = r.Clone(context.WithValue(r.Context(), sessionKey{}, session[:8]))
		bearer.Set(r, h.token)
	}
	h.api.ServeHTTP(w, r)
}

type sessionKey struct{}

// SessionOf names the dashboard session a request the dashboard handed to the API came with
// (the first digits of the session's hash, never the cookie itself), or "" for a request
// that came with the bearer token. A client cannot set it: it lives in the request's context.
func SessionOf(ctx context.Context) string {
	s, _ := ctx.Value(sessionKey{}).(string)
	return s
}

func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }

// sameOrigin reports whether r came from a page of this origin: its Origin header names this
// host and it carries CSRFHeader (which a cross-site form cannot set, and which a cross-site
// script can only send after a CORS preflight that this server never answers).
func sameOrigin(r *http.Request) bool {
	if r.Header.Get(CSRFHeader) != "1" {
		return false
	}
	o, err := url.Parse(r.Header.Get("Origin"))
	if err != nil || o.Host == "" {
		return false
	}
	return strings.EqualFold(o.Host, r.Host) && (o.Scheme == "http" || o.Scheme == "https")
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte("Not logged in. Run `proteus dashboard` on the agent's host for a one-time login link.\n"))
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func random() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// session returns the hash of r's valid session, or "".
func (h *Handler) session(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil || len(c.Value) != 64 {
		return ""
	}
	k := hash(c.Value)
	h.mu.Lock()
	defer h.mu.Unlock()
	exp, ok := h.sessions[k]
	if !ok {
		return ""
	}
	if !h.now().Before(exp) {
		delete(h.sessions, k)
		return ""
	}
	return k
}

// LinkAnswer is the answer of POST /api/v1/dashboard/login-link.
type LinkAnswer struct {
	URL     string    `json:"url"`
	Expires time.Time `json:"expires"`
}

// link mints a one-time login link for a holder of the bearer token.
func (h *Handler) link(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if !bearer.Valid(r, h.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="proteus"`)
		http.Error(w, "missing or wrong bearer token", http.StatusUnauthorized)
		return
	}
	code, err := random()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	now := h.now()
	exp := now.Add(LinkTTL)
	h.mu.Lock()
	prune(h.links, now, maxLinks-1)
	h.links[hash(code)] = exp
	h.mu.Unlock()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: LoginPath, RawQuery: url.Values{"code": {code}}.Encode()}
	h.log.Info("one-time login link issued", "expires", exp)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(LinkAnswer{URL: u.String(), Expires: exp})
}

// login spends a one-time code and starts a session. It answers with a page that moves on to
// the dashboard itself (a same-origin navigation, so the SameSite=Strict cookie goes along even
// when the link was opened from another site's page or a terminal).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	code := r.URL.Query().Get("code")
	now := h.now()
	h.mu.Lock()
	exp, ok := h.links[hash(code)]
	delete(h.links, hash(code)) // one use, valid or not
	h.mu.Unlock()
	if code == "" || !ok || !now.Before(exp) {
		h.log.Warn("login with an unknown, spent or expired code", "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("This login link is unknown, spent or expired. Run `proteus dashboard` for a fresh one.\n"))
		return
	}
	sess, err := random()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.mu.Lock()
	prune(h.sessions, now, maxSessions-1)
	h.sessions[hash(sess)] = now.Add(SessionTTL)
	h.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sess, Path: "/", MaxAge: int(SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	h.log.Info("dashboard login", "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=/">` +
		`<title>Proteus</title><p>Logged in. <a href="/">Open the dashboard</a>.</p>`))
}

// prune drops expired entries of m, then the ones expiring first until at most n remain.
func prune(m map[string]time.Time, now time.Time, n int) {
	for k, exp := range m {
		if !now.Before(exp) {
			delete(m, k)
		}
	}
	for len(m) > n {
		var first string
		for k, exp := range m {
			if first == "" || exp.Before(m[first]) {
				first = k
			}
		}
		delete(m, first)
	}
}
