package config

import (
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Gateway is the `gateway` section: the mimic voting gateway in front of the executors (see
// docs/operations.md, "Voting gateway"). Validation never touches files or the network; the
// TLS files are read when the gateway starts.
type Gateway struct {
	// Listen is the client-facing host:port; default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// Frontend is what serves the agent's clients: vote (default), the mimic voting gateway
	// configured by this section, or proxy, a plain round-robin reverse proxy (one executor
	// per request, no vote). The standalone `proteus gateway` always votes.
	Frontend string `yaml:"frontend"`
	// Backends are base URLs of servers already running, for the standalone `proteus gateway`;
	// the agent takes its executors from the pool instead.
	Backends []string `yaml:"backends"`
	// K is how many executors answer a voted request (default 3); Quorum how many equivalent
	// responses decide (default 0: a majority of K).
	K      int `yaml:"k"`
	Quorum int `yaml:"quorum"`
	// AllowWeakVote lets a quorum below a majority of K, or a K above the number of executors
	// (pool.desired) or backends, through validation; either lets fewer executors than a
	// majority decide, so the agent warns about it at every start. Default false: refused.
	AllowWeakVote bool `yaml:"allow_weak_vote"`
	// Scheduler chooses the K executors: random (default), round-robin, trust-weighted,
	// max-diversity.
	Scheduler string `yaml:"scheduler"`
	// Routes override the default policy (vote for GET, HEAD and OPTIONS, single otherwise)
	// by path prefix and method; the longest matching prefix wins.
	Routes []GatewayRoute `yaml:"routes"`

	Timeouts GatewayTimeouts `yaml:"timeouts"`
	// MaxHeaderBytes bounds request headers (default 16384; above: 431).
	MaxHeaderBytes int `yaml:"max_header_bytes"`
	// BodyLimit bounds buffered request bodies (default 1 MiB; above: 413); ResponseLimit the
	// executor response bodies on voted routes (default 8 MiB; above: availability dissent);
	// single routes stream their answers, whatever the size.
	BodyLimit     int64 `yaml:"body_limit"`
	ResponseLimit int64 `yaml:"response_limit"`
	// MaxInFlight bounds concurrent client requests (default 1024; above: 503). A request
	// takes its slot only once its body has arrived (see timeouts.body).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxPerClient bounds the requests one client address (IPv6: one /64) has in progress at
	// once, body reading included (default 64; above: 429).
	MaxPerClient int `yaml:"max_per_client"`
	// MaxConnsPerClient bounds the connections one client address (IPv6: one /64) holds open
	// at once (default 512; above: 429 and closed); trusted_proxies are not counted.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// ResponseHeaderLimit bounds an executor's response head in bytes (default 65536, at
	// least 1024; above: the executor request fails, an availability dissent).
	ResponseHeaderLimit int64 `yaml:"response_header_limit"`
	// Buffers bound the memory and disk that voted response bodies take.
	Buffers GatewayBuffers `yaml:"buffers"`

	Ignore GatewayIgnore `yaml:"ignore"`
	// FoldHTML folds white space in HTML bodies before comparing them.
	FoldHTML bool `yaml:"fold_html"`
	// CompareErrorBodies also compares headers and bodies of 4xx/5xx responses and forwards
	// the voted ones (by default only their status is voted and the client gets the gateway's
	// own page for it, since each server words its error pages its own way).
	CompareErrorBodies bool         `yaml:"compare_error_bodies"`
	NoiseLearning      GatewayNoise `yaml:"noise_learning"`
	// TrustedProxies are addresses or CIDRs of proxies in front of the gateway (a load
	// balancer, a CDN): only from them is the client's address read from X-Forwarded-For or
	// Forwarded. Default none: the peer's address is the client's.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// AccessLog, when set, is a file that gets one JSON line per request with the vote's
	// outcome (which executors agreed, which dissented and how); "-" is standard error.
	AccessLog string `yaml:"access_log"`
	// ServerHeader is the Server value of every answer (default empty: none); an executor's
	// own Server header never reaches a client.
	ServerHeader string `yaml:"server_header"`
	// Identities make what the gateway presents of itself follow the game's deception signal
	// (see docs/model.md, "What each signal shows an attacker"): one identity per signal ID
	// of the model, switched live when the engine changes the signal of SignalAsset (any
	// asset's when empty). Signal is the one presented until the engine sends one, or the one
	// restored from the audit store (default: the first key in sorted order). Exclusive with
	// server_header, which is the one identity when the gateway has no signals.
	Identities  map[string]GatewayIdentity `yaml:"identities"`
	Signal      string                     `yaml:"signal"`
	SignalAsset string                     `yaml:"signal_asset"`

	// FailStatus answers requests without a quorum (default 502).
	FailStatus int `yaml:"fail_status"`
	// WaitAll answers only when all K executors answered or timed out, and Jitter adds a
	// random delay up to its value: both blunt timing side channels.
	WaitAll bool          `yaml:"wait_all"`
	Jitter  time.Duration `yaml:"jitter"`

	// TrustWindow is how many recent requests each executor's trust is computed over.
	TrustWindow int            `yaml:"trust_window"`
	Rebuild     GatewayRebuild `yaml:"rebuild"`
	Eject       GatewayEject   `yaml:"eject"`

	TLS GatewayTLS `yaml:"tls"`
	// H2C also accepts HTTP/2 without TLS (prior knowledge).
	H2C bool `yaml:"h2c"`
}

// Agent frontends (Gateway.Frontend).
const (
	FrontendVote  = "vote"
	FrontendProxy = "proxy"
)

// GatewayRoute applies Policy (vote, vote-all, single) to requests whose canonical path starts
// with Prefix and whose method is in Methods (empty: GET, HEAD and OPTIONS). A method no route
// names is refused (405, or 501 for an unknown one). CompareErrorBodies, when set, overrides
// the section's compare_error_bodies for this route.
type GatewayRoute struct {
	Prefix             string   `yaml:"prefix"`
	Methods            []string `yaml:"methods"`
	Policy             string   `yaml:"policy"`
	CompareErrorBodies *bool    `yaml:"compare_error_bodies"`
}

// GatewayBuffers: each voted response body is kept in memory up to SpoolThreshold bytes
// (default 262144), above it in an unlinked file in SpoolDir (default: the system's
// temporary directory, $TMPDIR or /tmp), where it is compared raw. MemoryBudget bounds the
// bytes of all bodies in memory (default 128 MiB), SpoolBudget those of all spooled ones
// (default 2 GiB); an executor request over either fails without counting as the executor's
// dissent, and a request left without a quorum gets 503.
type GatewayBuffers struct {
	SpoolThreshold int64  `yaml:"spool_threshold"`
	SpoolDir       string `yaml:"spool_dir"`
	MemoryBudget   int64  `yaml:"memory_budget"`
	SpoolBudget    int64  `yaml:"spool_budget"`
}

// GatewayTimeouts are the client-side server timeouts and the per-executor request timeout.
type GatewayTimeouts struct {
	ReadHeader time.Duration `yaml:"read_header"` // default 5s
	Body       time.Duration `yaml:"body"`        // a request body must arrive whole within this; default 10s, then 408
	Read       time.Duration `yaml:"read"`        // default 30s
	Write      time.Duration `yaml:"write"`       // default 30s
	Idle       time.Duration `yaml:"idle"`        // default 60s
	Upstream   time.Duration `yaml:"upstream"`    // default 5s
}

// GatewayIgnore lists fields left out of the vote, besides the built-in volatile headers
// (Date, Server, ETag, Last-Modified, Content-Length, ...).
type GatewayIgnore struct {
	Headers      []string `yaml:"headers"`
	JSONPointers []string `yaml:"json_pointers"`
}

// GatewayNoise configures noise learning: a field in which every executor differed from every
// other, on MinSamples distinct paths where the responses otherwise agreed, becomes noise
// (never one where a single executor is the odd one out, and never a security header).
type GatewayNoise struct {
	Enabled    *bool `yaml:"enabled"` // default true
	MinSamples int   `yaml:"min_samples"`
}

// GatewayRebuild asks for an executor's rebuild after Threshold dissents within Window
// (threshold 0: never).
type GatewayRebuild struct {
	Threshold *int          `yaml:"threshold"` // default 5
	Window    time.Duration `yaml:"window"`    // default 1m
}

// GatewayEject leaves an executor out of the picks after After consecutive availability
// failures (after 0: never), for For, doubling up to Max while the probe after each spell fails.
type GatewayEject struct {
	After *int          `yaml:"after"` // default 3
	For   time.Duration `yaml:"for"`   // default 1s
	Max   time.Duration `yaml:"max"`   // default 30s
}

// EjectAfter is the effective number of consecutive failures that eject an executor (0: never).
func (x *Gateway) EjectAfter() int {
	if x.Eject.After == nil {
		return 3
	}
	return *x.Eject.After
}

// GatewayTLS enables HTTPS (ALPN h2 and http/1.1) with PEM files.
type GatewayTLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// LearningEnabled reports whether noise learning is on.
func (x *Gateway) LearningEnabled() bool {
	return x.NoiseLearning.Enabled == nil || *x.NoiseLearning.Enabled
}

// RebuildThreshold is the effective rebuild threshold.
func (x *Gateway) RebuildThreshold() int {
	if x.Rebuild.Threshold == nil {
		return 5
	}
	return *x.Rebuild.Threshold
}

func (x *Gateway) applyDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	if x.Listen == "" {
		x.Listen = "127.0.0.1:8080"
	}
	if x.Frontend == "" {
		x.Frontend = FrontendVote
	}
	defInt(&x.K, 3)
	if x.Scheduler == "" {
		x.Scheduler = "random"
	}
	for i := range x.Routes {
		if x.Routes[i].Policy == "" {
			x.Routes[i].Policy = "vote"
		}
	}
	def(&x.Timeouts.ReadHeader, 5*time.Second)
	def(&x.Timeouts.Read, 30*time.Second)
	def(&x.Timeouts.Write, 30*time.Second)
	def(&x.Timeouts.Idle, 60*time.Second)
	def(&x.Timeouts.Upstream, 5*time.Second)
	def(&x.Timeouts.Body, 10*time.Second)
	defInt(&x.MaxPerClient, 64)
	defInt(&x.MaxConnsPerClient, 512)
	def64 := func(i *int64, v int64) {
		if *i == 0 {
			*i = v
		}
	}
	def64(&x.ResponseHeaderLimit, 64<<10)
	def64(&x.Buffers.SpoolThreshold, 256<<10)
	def64(&x.Buffers.MemoryBudget, 128<<20)
	def64(&x.Buffers.SpoolBudget, 2<<30)
	defInt(&x.MaxHeaderBytes, 16<<10)
	if x.BodyLimit == 0 {
		x.BodyLimit = 1 << 20
	}
	if x.ResponseLimit == 0 {
		x.ResponseLimit = 8 << 20
	}
	defInt(&x.MaxInFlight, 1024)
	defInt(&x.NoiseLearning.MinSamples, 20)
	defInt(&x.FailStatus, http.StatusBadGateway)
	defInt(&x.TrustWindow, 100)
	def(&x.Rebuild.Window, time.Minute)
	def(&x.Eject.For, time.Second)
	def(&x.Eject.Max, 30*time.Second)
	if x.Signal == "" && len(x.Identities) > 0 {
		x.Signal = slices.Sorted(maps.Keys(x.Identities))[0]
	}
}

func (x *Gateway) validate(field string, p *strictyaml.Problems) {
	checkListen(field+".listen", x.Listen, p)
	if x.Frontend != FrontendVote && x.Frontend != FrontendProxy {
		p.Addf(field+".frontend", "must be %s or %s, got %q", FrontendVote, FrontendProxy, x.Frontend)
	}
	for i, b := range x.Backends {
		if !strings.HasPrefix(b, "http://") && !strings.HasPrefix(b, "https://") {
			p.Addf(field+".backends["+strconv.Itoa(i)+"]", "must be an http:// or https:// base URL, got %q", b)
		}
	}
	if x.K < 1 || x.K > 64 {
		p.Addf(field+".k", "must be 1..64, got %d", x.K)
	}
	if x.Quorum < 0 || x.Quorum > x.K {
		p.Addf(field+".quorum", "must be 0 (a majority of k) or 1..k=%d, got %d", x.K, x.Quorum)
	} else if x.Quorum != 0 && x.Quorum <= x.K/2 && !x.AllowWeakVote {
		p.Addf(field+".quorum", "%d of k=%d is not a majority: a minority of executors would decide (set allow_weak_vote: true to run it anyway)", x.Quorum, x.K)
	}
	if n := len(x.Backends); n > 0 && x.K > n && !x.AllowWeakVote && x.VotesOnK() {
		p.Addf(field+".k", "k=%d is more than the %d backends: every vote would have fewer voters than asked (set allow_weak_vote: true to run it anyway)", x.K, n)
	}
	switch x.Scheduler {
	case "random", "round-robin", "trust-weighted", "max-diversity":
	default:
		p.Addf(field+".scheduler", "must be random, round-robin, trust-weighted or max-diversity, got %q", x.Scheduler)
	}
	for i, r := range x.Routes {
		f := field + ".routes[" + strconv.Itoa(i) + "]"
		if !strings.HasPrefix(r.Prefix, "/") {
			p.Addf(f+".prefix", "must start with /, got %q", r.Prefix)
		}
		switch r.Policy {
		case "vote", "vote-all", "single":
		default:
			p.Addf(f+".policy", "must be vote, vote-all or single, got %q", r.Policy)
		}
		for j, m := range r.Methods {
			switch {
			case m == "" || strings.ToUpper(m) != m || !isToken(m):
				p.Addf(f+".methods["+strconv.Itoa(j)+"]", "must be an upper-case HTTP method, got %q", m)
			case m == http.MethodConnect || m == http.MethodTrace:
				p.Addf(f+".methods["+strconv.Itoa(j)+"]", "%s is never forwarded to executors", m)
			}
		}
	}
	pos := func(name string, d time.Duration) {
		if d < 0 {
			p.Addf(field+"."+name, "must not be negative, got %s", d)
		}
	}
	pos("timeouts.read_header", x.Timeouts.ReadHeader)
	pos("timeouts.read", x.Timeouts.Read)
	pos("timeouts.write", x.Timeouts.Write)
	pos("timeouts.idle", x.Timeouts.Idle)
	pos("timeouts.upstream", x.Timeouts.Upstream)
	pos("timeouts.body", x.Timeouts.Body)
	pos("jitter", x.Jitter)
	pos("rebuild.window", x.Rebuild.Window)
	pos("eject.for", x.Eject.For)
	pos("eject.max", x.Eject.Max)
	if x.MaxHeaderBytes < 1024 {
		p.Addf(field+".max_header_bytes", "must be at least 1024, got %d", x.MaxHeaderBytes)
	}
	if x.BodyLimit < 0 {
		p.Addf(field+".body_limit", "must not be negative, got %d", x.BodyLimit)
	}
	if x.ResponseLimit < 0 {
		p.Addf(field+".response_limit", "must not be negative, got %d", x.ResponseLimit)
	}
	if x.MaxInFlight < 1 {
		p.Addf(field+".max_in_flight", "must be at least 1, got %d", x.MaxInFlight)
	}
	if x.MaxPerClient < 1 {
		p.Addf(field+".max_per_client", "must be at least 1, got %d", x.MaxPerClient)
	}
	if x.MaxConnsPerClient < 1 {
		p.Addf(field+".max_conns_per_client", "must be at least 1, got %d", x.MaxConnsPerClient)
	}
	if x.ResponseHeaderLimit < 1024 || x.ResponseHeaderLimit > 16<<20 {
		p.Addf(field+".response_header_limit", "must be 1024..16777216 bytes, got %d", x.ResponseHeaderLimit)
	}
	b := &x.Buffers
	if b.SpoolThreshold < 4096 {
		p.Addf(field+".buffers.spool_threshold", "must be at least 4096 bytes, got %d", b.SpoolThreshold)
	}
	if b.MemoryBudget < b.SpoolThreshold {
		p.Addf(field+".buffers.memory_budget", "must be at least buffers.spool_threshold (%d): no body over it could be read, got %d", b.SpoolThreshold, b.MemoryBudget)
	}
	if b.SpoolBudget < 0 {
		p.Addf(field+".buffers.spool_budget", "must not be negative, got %d", b.SpoolBudget)
	}
	if b.SpoolDir != "" && !filepath.IsAbs(b.SpoolDir) {
		p.Addf(field+".buffers.spool_dir", "must be an absolute path, got %q", b.SpoolDir)
	}
	for i, h := range x.Ignore.Headers {
		switch {
		case h == "" || strings.ContainsAny(h, " \t:\r\n"):
			p.Addf(field+".ignore.headers["+strconv.Itoa(i)+"]", "must be a header name, got %q", h)
		case SecurityHeader(http.CanonicalHeaderKey(h)):
			p.Addf(field+".ignore.headers["+strconv.Itoa(i)+"]", "%s decides how a client treats the answer and is always voted on; it cannot be ignored", http.CanonicalHeaderKey(h))
		}
	}
	for i, ptr := range x.Ignore.JSONPointers {
		if !strings.HasPrefix(ptr, "/") {
			p.Addf(field+".ignore.json_pointers["+strconv.Itoa(i)+"]", "must be a JSON pointer starting with /, got %q", ptr)
		}
	}
	if x.NoiseLearning.MinSamples < 1 {
		p.Addf(field+".noise_learning.min_samples", "must be at least 1, got %d", x.NoiseLearning.MinSamples)
	}
	if x.FailStatus < 400 || x.FailStatus > 599 {
		p.Addf(field+".fail_status", "must be a 4xx or 5xx status, got %d", x.FailStatus)
	}
	if x.TrustWindow < 1 {
		p.Addf(field+".trust_window", "must be at least 1, got %d", x.TrustWindow)
	}
	if x.EjectAfter() < 0 {
		p.Addf(field+".eject.after", "must not be negative, got %d", x.EjectAfter())
	}
	if x.Eject.Max < x.Eject.For {
		p.Addf(field+".eject.max", "must be at least eject.for (%s), got %s", x.Eject.For, x.Eject.Max)
	}
	if x.RebuildThreshold() < 0 {
		p.Addf(field+".rebuild.threshold", "must not be negative, got %d", x.RebuildThreshold())
	}
	for i, tp := range x.TrustedProxies {
		if _, err := ParsePrefixOrAddr(tp); err != nil {
			p.Addf(field+".trusted_proxies["+strconv.Itoa(i)+"]", "%v", err)
		}
	}
	if strings.ContainsAny(x.ServerHeader, "\r\n\x00") {
		p.Addf(field+".server_header", "must be one line, got %q", x.ServerHeader)
	}
	x.validateIdentities(field, p)
	if (x.TLS.Cert == "") != (x.TLS.Key == "") {
		p.Addf(field+".tls", "needs both cert and key")
	}
}

// LoadStandaloneGateway reads a config file for `proteus gateway`, which runs only the voting
// gateway in front of servers the user runs: the whole document is decoded strictly (unknown
// fields are still errors), but only version, log and gateway are validated, so the file needs
// no pool section.
func LoadStandaloneGateway(path string) (*Config, error) {
	return load(path, func(file string, data []byte) (*Config, error) { return parse(file, data, standaloneGateway) })
}

// ValidateStandaloneGateway checks what LoadStandaloneGateway checks, without I/O.
func (c *Config) ValidateStandaloneGateway() error {
	var kept strictyaml.Problems
	for _, p := range c.Problems() {
		if standaloneGateway(p) {
			kept = append(kept, p)
		}
	}
	return kept.Err("config")
}

func standaloneGateway(p strictyaml.Problem) bool {
	return p.Field == "version" || strings.HasPrefix(p.Field, "log.") || p.Field == "gateway" || strings.HasPrefix(p.Field, "gateway.")
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), as a method must be.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return s != ""
}

// SecurityHeader reports whether a response header (canonical name) decides how a client
// treats the answer, so the gateway always votes on it: neither noise learning nor
// gateway.ignore.headers may leave it out.
func SecurityHeader(k string) bool {
	switch k {
	case "Content-Type", "Content-Encoding", "Content-Disposition", "Content-Language", "Content-Range",
		"Location", "Refresh", "Link", "Set-Cookie", "Set-Cookie2", "Www-Authenticate", "Authorization",
		"Content-Security-Policy", "Content-Security-Policy-Report-Only", "Strict-Transport-Security",
		"X-Frame-Options", "X-Content-Type-Options", "X-Xss-Protection", "Referrer-Policy",
		"Permissions-Policy", "Feature-Policy", "Cross-Origin-Opener-Policy", "Cross-Origin-Embedder-Policy",
		"Cross-Origin-Resource-Policy", "Cache-Control", "Pragma", "Vary", "Clear-Site-Data",
		"X-Permitted-Cross-Domain-Policies", "Timing-Allow-Origin", "Alt-Svc":
		return true
	}
	return strings.HasPrefix(k, "Access-Control-")
}

// VotesOnK reports whether some requests are voted on by k executors: not when a catch-all
// route ("/" for the read methods) sends them elsewhere (single, vote-all) and no route votes.
func (x *Gateway) VotesOnK() bool {
	catchAll := false
	for _, r := range x.Routes {
		if r.Policy == "vote" {
			return true
		}
		if r.Prefix == "/" && len(r.Methods) == 0 {
			catchAll = true
		}
	}
	return !catchAll
}
