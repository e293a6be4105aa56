package config

import (
	"fmt"
	"maps"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Pool is the `pool` section: which variants of the protected service run as executors, how
// many, how they are health-checked and how often they are rotated.
type Pool struct {
	// Desired is the number of executors kept in service (default 3).
	Desired int `yaml:"desired"`
	// Min is the number that must be healthy for the agent to start (default Desired).
	// Rotation is make-before-break, so it never takes the pool below it.
	Min int `yaml:"min"`
	// MaxConcurrent is c*: at most this many reconfigurations (rotations, replacements) run
	// at once; more wait (default 1).
	MaxConcurrent int `yaml:"max_concurrent"`
	// Redraw lets each rotation pick a new variant, so the set of running implementations
	// keeps changing (default true).
	Redraw *bool `yaml:"redraw"`
	// Grace is how long a stopped executor gets between SIGTERM and SIGKILL (default 5s).
	Grace time.Duration `yaml:"grace"`
	// StartTimeout bounds how long a new executor may take to become healthy (default 15s).
	StartTimeout time.Duration `yaml:"start_timeout"`
	// DrainTimeout bounds the wait for in-flight requests of a retired executor (default 10s).
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Protocol is what the executors serve: http (default), behind the voting HTTP gateway
	// (the gateway section), or dns: DNS servers behind the voting DNS front (the dns section),
	// health-checked by a DNS query (health.query).
	Protocol  string    `yaml:"protocol"`
	Health    Health    `yaml:"health"`
	Rotation  Rotation  `yaml:"rotation"`
	Isolation Isolation `yaml:"isolation"`
	Variants  []Variant `yaml:"variants"`
	// Decoy is an executor outside the vote (a honeypot variant of the site, with canary
	// content): the gateway serves it to the clients the engine redirects (engine.redirect),
	// and no other client ever reaches it. One instance, kept healthy, never rotated.
	Decoy *Variant `yaml:"decoy"`
	// Kubernetes configures the kubernetes driver (config/kubernetes.go).
	Kubernetes Kubernetes `yaml:"kubernetes"`
}

// Isolation is how the process driver confines each executor (docs/operations.md,
// "Executor isolation"): its own uid and gid from UIDs, namespaces, seccomp, Landlock,
// nftables and these limits. Zero values take the defaults.
type Isolation struct {
	// Mode is auto (default: full isolation when the agent is root, degraded and said so
	// otherwise), required (refuse to start unless isolation is full) or off (executors run
	// as the agent; logged as a warning).
	Mode string `yaml:"mode"`
	// UIDs is the range of uids (and gids) handed out, one per executor, FIRST-LAST
	// (default 600000-600999). It must not hold any user or group of the machine.
	UIDs string `yaml:"uids"`
	// Memory is the memory limit of one executor in bytes (default 512 MiB).
	Memory int64 `yaml:"memory"`
	// Processes bounds the processes and threads of one executor (default 256).
	Processes int `yaml:"processes"`
	// OpenFiles bounds the open files of each of its processes (default 4096).
	OpenFiles int `yaml:"open_files"`
	// CPU is the CPU time it may use, in cores (default 1).
	CPU float64 `yaml:"cpu"`
}

// Isolation defaults and bounds.
const (
	DefaultIsolationUIDs = "600000-600999"
	minIsolationUID      = 1000
	minIsolationMemory   = 16 << 20
)

// Health configures health checks: HTTP GETs of path, or with protocol dns the query.
type Health struct {
	Path string `yaml:"path"` // default /healthz; a variant may override it
	// Query is the DNS health probe of protocol dns, "NAME TYPE" such as "www.example.org. A":
	// healthy is an answer over UDP and TCP with NOERROR and at least one record. A variant
	// may override it (health_query).
	Query    string        `yaml:"query"`
	Interval time.Duration `yaml:"interval"` // default 1s
	Timeout  time.Duration `yaml:"timeout"`  // default 1s
	Failures int           `yaml:"failures"` // consecutive failures before replacement; default 3
}

// Rotation is the moving-target schedule. The policies combine: an executor is rotated when
// its interval draw or its maximum lifetime is reached, and every cron tick rotates all.
// With none set, executors rotate only on request (API, CLI, engine).
type Rotation struct {
	// Every is an interval with random jitter, "30s-90s" (uniform in the range, drawn afresh
	// for each executor) or a fixed "45s".
	Every string `yaml:"every"`
	// Cron is a standard 5-field cron expression or a descriptor (@hourly, @every 10m).
	Cron string `yaml:"cron"`
	// MaxLifetime rotates any executor older than this.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

// Variant is one implementation of the protected service.
type Variant struct {
	Name   string `yaml:"name"`
	Driver string `yaml:"driver"` // executor driver ID; default "process"
	// Image is, for the process driver, a directory with a MANIFEST.sha256 (a relative path
	// is relative to the config file) or "builtin:demo", the embedded demo site written to
	// <data-dir>/images/demo on first start. For docker, an image pinned by digest.
	Image string `yaml:"image"`
	// Command is the argv; each element is a template with {{.Port}}, {{.Addr}}, {{.Dir}}
	// and {{.Self}} (the proteus binary).
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	// Traits are declared properties (server, lang, os, ...) for diversity and relevance.
	Traits map[string]string `yaml:"traits"`
	// HealthPath overrides health.path for this variant.
	HealthPath string `yaml:"health_path"`
	// HealthQuery overrides health.query for this variant (protocol dns).
	HealthQuery string `yaml:"health_query"`
	// Files are rendered for each executor before it starts: relative path -> template with
	// the fields of command ({{.Port}}, {{.IP}}, {{.Addr}}, {{.Dir}}, {{.State}}, {{.Files}},
	// and {{.Self}} for the process driver), e.g. a DNS server's config with its own port.
	// The process driver writes them into the executor's work directory (a path may not
	// name a file of the image); the docker driver into a directory of the container's own,
	// mounted read-only at /etc/proteus ({{.Files}}). Other drivers refuse them.
	Files map[string]string `yaml:"files"`
	// ContainerPort is the port the service listens on inside its container (docker only;
	// with protocol dns, for UDP and TCP, and required).
	ContainerPort int `yaml:"container_port"`
	// AllowOutbound lets the executor connect to other hosts (an upstream, a database); by
	// default it may only answer connections. Addresses of this host stay closed either way.
	AllowOutbound bool `yaml:"allow_outbound"`
	// Canaries (pool.decoy only) are the tokens planted in the decoy executor's content (a
	// fake password, an API key in a canary file): nobody has a use for them but whoever
	// harvested them, so a request to the gateway, or a decoy connection, that presents one
	// (in a header, a cookie, Basic credentials, the query or the body) is a high-confidence
	// event with its source (sensor gateway or decoy, kind canary; give it an engine rule).
	Canaries []string `yaml:"canaries"`
}

// Bounds of pool.decoy.canaries: a token short enough to turn up by chance would make
// honest clients suspects.
const (
	minCanary   = 8
	maxCanary   = 200
	maxCanaries = 64
)

// BuiltinDemoImage names the embedded demo site as a process image.
const BuiltinDemoImage = "builtin:demo"

// RedrawEnabled reports the effective redraw setting.
func (x *Pool) RedrawEnabled() bool { return x.Redraw == nil || *x.Redraw }

func (x *Pool) applyDefaults() {
	if x.Desired == 0 {
		x.Desired = 3
	}
	if x.Min == 0 {
		x.Min = x.Desired
	}
	if x.MaxConcurrent == 0 {
		x.MaxConcurrent = 1
	}
	setDur := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	setDur(&x.Grace, 5*time.Second)
	setDur(&x.StartTimeout, 15*time.Second)
	setDur(&x.DrainTimeout, 10*time.Second)
	setDur(&x.Health.Interval, time.Second)
	setDur(&x.Health.Timeout, time.Second)
	if x.Health.Path == "" {
		x.Health.Path = "/healthz"
	}
	if x.Protocol == "" {
		x.Protocol = ProtocolHTTP
	}
	if x.Health.Failures == 0 {
		x.Health.Failures = 3
	}
	x.Kubernetes.applyDefaults()
	iso := &x.Isolation
	if iso.Mode == "" {
		iso.Mode = "auto"
	}
	if iso.UIDs == "" {
		iso.UIDs = DefaultIsolationUIDs
	}
	if iso.Memory == 0 {
		iso.Memory = 512 << 20
	}
	if iso.Processes == 0 {
		iso.Processes = 256
	}
	if iso.OpenFiles == 0 {
		iso.OpenFiles = 4096
	}
	if iso.CPU == 0 {
		iso.CPU = 1
	}
	vs := make([]*Variant, 0, len(x.Variants)+1)
	for i := range x.Variants {
		vs = append(vs, &x.Variants[i])
	}
	if x.Decoy != nil {
		vs = append(vs, x.Decoy)
	}
	for _, v := range vs {
		if v.Driver == "" {
			v.Driver = "process"
		}
		if v.HealthPath == "" {
			v.HealthPath = x.Health.Path
		}
		if v.HealthQuery == "" {
			v.HealthQuery = x.Health.Query
		}
	}
}

// Pool protocols.
const (
	ProtocolHTTP = "http"
	ProtocolDNS  = "dns"
)

// ParseDNSQuery parses a DNS health query, "NAME TYPE" (the name fully qualified, the type a
// mnemonic such as A, AAAA, SOA, TXT), into the name and the type code.
func ParseDNSQuery(s string) (string, uint16, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return "", 0, fmt.Errorf("want NAME TYPE such as \"www.example.org. A\", got %q", s)
	}
	name, typ := f[0], strings.ToUpper(f[1])
	if _, ok := dns.IsDomainName(name); !ok || !dns.IsFqdn(name) {
		return "", 0, fmt.Errorf("%q is not a fully qualified domain name (it ends with a dot)", name)
	}
	code, ok := dns.StringToType[typ]
	switch {
	case !ok:
		return "", 0, fmt.Errorf("unknown record type %q", f[1])
	case code == dns.TypeAXFR || code == dns.TypeIXFR || code == dns.TypeANY || code == dns.TypeOPT || code == dns.TypeNone:
		return "", 0, fmt.Errorf("record type %s cannot be a health query", typ)
	}
	return name, code, nil
}

var (
	variantNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	driverIDRe    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	cronFieldRe   = regexp.MustCompile(`^[0-9A-Za-z*/,?-]+$`)
)

func (x *Pool) validate(field string, p *strictyaml.Problems) {
	if x.Desired < 1 || x.Desired > 64 {
		p.Addf(field+".desired", "must be in [1,64], got %d", x.Desired)
	}
	if x.Min < 1 || x.Min > x.Desired {
		p.Addf(field+".min", "must be in [1,desired=%d], got %d", x.Desired, x.Min)
	}
	if x.MaxConcurrent < 1 {
		p.Addf(field+".max_concurrent", "must be >= 1, got %d", x.MaxConcurrent)
	}
	positive := func(f string, d time.Duration) {
		if d <= 0 {
			p.Addf(f, "must be a positive duration, got %v", d)
		}
	}
	positive(field+".grace", x.Grace)
	positive(field+".start_timeout", x.StartTimeout)
	positive(field+".drain_timeout", x.DrainTimeout)
	positive(field+".health.interval", x.Health.Interval)
	positive(field+".health.timeout", x.Health.Timeout)
	if x.Health.Failures < 1 {
		p.Addf(field+".health.failures", "must be >= 1, got %d", x.Health.Failures)
	}
	checkPath(field+".health.path", x.Health.Path, p)
	switch x.Protocol {
	case ProtocolHTTP:
		if x.Health.Query != "" {
			p.Addf(field+".health.query", "is for protocol dns; this pool's protocol is http (set pool.protocol: dns for DNS servers)")
		}
	case ProtocolDNS:
		if x.Health.Query != "" {
			if _, _, err := ParseDNSQuery(x.Health.Query); err != nil {
				p.Addf(field+".health.query", "%v", err)
			}
		}
	default:
		p.Addf(field+".protocol", "must be http or dns, got %q", x.Protocol)
	}
	x.Rotation.validate(field+".rotation", p)
	decoys := 0
	if x.Decoy != nil {
		decoys = 1
	}
	x.Isolation.validate(field+".isolation", x.Desired+x.MaxConcurrent+1+decoys, p)
	x.Kubernetes.validate(field, x.Variants, p)
	if len(x.Variants) == 0 {
		p.Addf(field, "variants: at least one variant is required")
	}
	seen := map[string]int{}
	for i, v := range x.Variants {
		vf := fmt.Sprintf("%s.variants[%d]", field, i)
		if !variantNameRe.MatchString(v.Name) {
			p.Addf(vf+".name", "must be 1-63 letters, digits, '.', '_' or '-' starting with a letter or digit, got %q", v.Name)
		} else if j, dup := seen[v.Name]; dup {
			p.Addf(vf+".name", "duplicate of variants[%d]", j)
		} else {
			seen[v.Name] = i
		}
		x.validateVariant(vf, v, p)
		if len(v.Canaries) > 0 {
			p.Addf(vf+".canaries", "only the decoy executor (pool.decoy) serves canaries; a voting variant's would be everyone's")
		}
	}
	if x.Protocol == ProtocolDNS {
		checkDistinctVariants(field, x.Variants, p)
	}
	if d := x.Decoy; d != nil {
		vf := field + ".decoy"
		if !variantNameRe.MatchString(d.Name) {
			p.Addf(vf+".name", "must be 1-63 letters, digits, '.', '_' or '-' starting with a letter or digit, got %q", d.Name)
		} else if j, dup := seen[d.Name]; dup {
			p.Addf(vf+".name", "is the name of variants[%d]: the decoy executor must be told apart from the voting ones", j)
		}
		if x.Protocol == ProtocolDNS {
			p.Addf(vf, "a decoy executor is for protocol http; this pool's protocol is dns")
		}
		x.validateVariant(vf, *d, p)
		validateCanaries(vf+".canaries", d.Canaries, p)
	}
}

// checkDistinctVariants refuses two DNS variants that would run the same server the same
// way (driver, image, command, files and env alike): the vote would be over copies of one
// implementation, and whatever fault or poisoning they share would win every vote.
func checkDistinctVariants(field string, vs []Variant, p *strictyaml.Problems) {
	for j := range vs {
		for i := range j {
			a, b := vs[i], vs[j]
			if a.Driver == b.Driver && a.Image == b.Image && slices.Equal(a.Command, b.Command) &&
				maps.Equal(a.Files, b.Files) && maps.Equal(a.Env, b.Env) {
				p.Addf(fmt.Sprintf("%s.variants[%d]", field, j), "runs the same server as variants[%d] (the same driver, image, command, files and env): "+
					"the vote would be over copies of one implementation, which a fault they share wins; give each variant another server, or list it once and raise desired", i)
				break
			}
		}
	}
}

// validateCanaries checks pool.decoy.canaries: each a token of printable ASCII without
// spaces, long enough not to turn up by chance, none repeated.
func validateCanaries(field string, cs []string, p *strictyaml.Problems) {
	if len(cs) > maxCanaries {
		p.Addf(field, "at most %d canaries, got %d", maxCanaries, len(cs))
	}
	seen := map[string]int{}
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if len(c) < minCanary || len(c) > maxCanary {
			p.Addf(f, "must be %d-%d bytes (a shorter token turns up in honest requests), got %d", minCanary, maxCanary, len(c))
		}
		if strings.ContainsFunc(c, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			p.Addf(f, "must be printable ASCII without spaces, got %q", c)
		}
		if j, dup := seen[c]; dup {
			p.Addf(f, "is already canaries[%d]", j)
		}
		seen[c] = i
	}
}

// validateVariant checks one variant (at field vf) of the pool.
func (x *Pool) validateVariant(vf string, v Variant, p *strictyaml.Problems) {
	if !driverIDRe.MatchString(v.Driver) {
		p.Addf(vf+".driver", "must be a driver ID such as process or docker, got %q", v.Driver)
	}
	if v.Image == "" {
		p.Addf(vf, "image: is required")
	} else if strings.HasPrefix(v.Image, "builtin:") && v.Image != BuiltinDemoImage {
		p.Addf(vf+".image", "unknown built-in image %q (known: %s)", v.Image, BuiltinDemoImage)
	}
	if v.Driver == "process" && len(v.Command) == 0 {
		p.Addf(vf, "command: is required for the process driver")
	}
	for j, a := range v.Command {
		if a == "" && j == 0 {
			p.Addf(fmt.Sprintf("%s.command[%d]", vf, j), "must not be empty")
		}
	}
	for k := range v.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			p.Addf(vf+".env", "bad variable name %q", k)
		}
	}
	checkPath(vf+".health_path", v.HealthPath, p)
	if x.Protocol == ProtocolDNS {
		switch {
		case v.HealthQuery == "":
			p.Addf(vf, "health_query: protocol dns needs a DNS health query (pool.health.query or the variant's health_query), such as \"www.example.org. A\"")
		case v.HealthQuery != x.Health.Query:
			if _, _, err := ParseDNSQuery(v.HealthQuery); err != nil {
				p.Addf(vf+".health_query", "%v", err)
			}
		}
		switch v.Driver {
		case "process":
		case "docker":
			// The port is published for UDP and TCP; without it the container answers nothing.
			if v.ContainerPort == 0 {
				p.Addf(vf+".container_port", "is required for a DNS server in a container (the port it listens on for UDP and TCP inside it, such as 53)")
			}
		default:
			p.Addf(vf+".driver", "protocol dns runs on the process and docker drivers (they render each server's files and publish its port for UDP and TCP), got %q", v.Driver)
		}
	} else if v.HealthQuery != "" && v.HealthQuery != x.Health.Query {
		p.Addf(vf+".health_query", "is for protocol dns; this pool's protocol is %s", x.Protocol)
	}
	if len(v.Files) > 0 && v.Driver != "process" && v.Driver != "docker" {
		p.Addf(vf+".files", "only the process driver (into an executor's work directory) and the docker driver (mounted read-only at /etc/proteus) render files, this variant's driver is %q", v.Driver)
	}
	for _, name := range slices.Sorted(maps.Keys(v.Files)) {
		if msg := checkFileName(name, v.Driver); msg != "" {
			p.Addf(vf+".files", "%q: %s", name, msg)
		}
	}
	if v.ContainerPort < 0 || v.ContainerPort > 65535 {
		p.Addf(vf+".container_port", "must be a port number, got %d", v.ContainerPort)
	}
}

func (x *Isolation) validate(field string, need int, p *strictyaml.Problems) {
	switch x.Mode {
	case "auto", "required", "off":
	default:
		p.Addf(field+".mode", "must be auto, required or off, got %q", x.Mode)
	}
	if first, count, err := ParseUIDRange(x.UIDs); err != nil {
		p.Addf(field+".uids", "%v", err)
	} else if count < need {
		p.Addf(field+".uids", "%d uids (%d-%d) are too few: desired + max_concurrent + 1 = %d executors may run at once", count, first, first+count-1, need)
	}
	if x.Memory < minIsolationMemory {
		p.Addf(field+".memory", "must be at least %d bytes (16 MiB), got %d", minIsolationMemory, x.Memory)
	}
	if x.Processes < 8 || x.Processes > 1<<22 {
		p.Addf(field+".processes", "must be in [8, 4194304], got %d", x.Processes)
	}
	if x.OpenFiles < 64 || x.OpenFiles > 1<<20 {
		p.Addf(field+".open_files", "must be in [64, 1048576], got %d", x.OpenFiles)
	}
	if !(x.CPU >= 0.01 && x.CPU <= 1024) {
		p.Addf(field+".cpu", "must be a number of cores in [0.01, 1024], got %v", x.CPU)
	}
}

// ParseUIDRange parses "FIRST-LAST" into the first uid and the count. The range must lie
// above the system and ordinary login users (>= 1000) and below 2^31-1.
func ParseUIDRange(s string) (first, count int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("want FIRST-LAST such as %s, got %q", DefaultIsolationUIDs, s)
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("want FIRST-LAST such as %s, got %q", DefaultIsolationUIDs, s)
	case lo < minIsolationUID:
		return 0, 0, fmt.Errorf("range %q starts below %d, among system and login users", s, minIsolationUID)
	case hi < lo:
		return 0, 0, fmt.Errorf("range %q ends before it starts", s)
	case hi > 1<<31-2:
		return 0, 0, fmt.Errorf("range %q ends above 2147483646", s)
	}
	return lo, hi - lo + 1, nil
}

func checkPath(field, path string, p *strictyaml.Problems) {
	if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t\r\n") {
		p.Addf(field, "must be an absolute URL path such as /healthz, got %q", path)
	}
}

func (r *Rotation) validate(field string, p *strictyaml.Problems) {
	if r.Every != "" {
		if _, _, err := ParseEvery(r.Every); err != nil {
			p.Addf(field+".every", "%v", err)
		}
	}
	if r.Cron != "" {
		if err := checkCron(r.Cron); err != nil {
			p.Addf(field+".cron", "%v", err)
		}
	}
	if r.MaxLifetime < 0 {
		p.Addf(field+".max_lifetime", "must be >= 0, got %v", r.MaxLifetime)
	}
}

// MinEvery is the shortest rotation interval accepted.
const MinEvery = 100 * time.Millisecond

// ParseEvery parses an interval with jitter: "30s-90s" gives [30s, 90s], "45s" gives
// [45s, 45s].
func ParseEvery(s string) (lo, hi time.Duration, err error) {
	a, b, ranged := strings.Cut(s, "-")
	lo, err = time.ParseDuration(strings.TrimSpace(a))
	if err != nil {
		return 0, 0, fmt.Errorf("want DURATION or MIN-MAX such as 30s-90s, got %q", s)
	}
	hi = lo
	if ranged {
		if hi, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("want DURATION or MIN-MAX such as 30s-90s, got %q", s)
		}
	}
	if lo < MinEvery {
		return 0, 0, fmt.Errorf("interval must be at least %v, got %q", MinEvery, s)
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %q ends before it starts", s)
	}
	return lo, hi, nil
}

// checkCron is a structural check (field count and characters); the scheduler parses the
// expression fully at start-up, before anything is started.
func checkCron(s string) error {
	if strings.HasPrefix(s, "@") {
		switch {
		case s == "@yearly", s == "@annually", s == "@monthly", s == "@weekly", s == "@daily", s == "@midnight", s == "@hourly":
			return nil
		case strings.HasPrefix(s, "@every "):
			d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(s, "@every ")))
			if err != nil || d < MinEvery {
				return fmt.Errorf("@every needs a duration of at least %v, got %q", MinEvery, s)
			}
			return nil
		}
		return fmt.Errorf("unknown descriptor %q", s)
	}
	f := strings.Fields(s)
	if len(f) != 5 {
		return fmt.Errorf("want 5 fields (minute hour day-of-month month day-of-week), got %d in %q", len(f), s)
	}
	for _, x := range f {
		if !cronFieldRe.MatchString(x) {
			return fmt.Errorf("bad field %q in %q", x, s)
		}
	}
	return nil
}

// checkFileName says what is wrong with a files entry of a variant on driver ("" when
// nothing): it must be a clean relative slash path inside the directory the driver renders
// into, and on the process driver not one of its own names in the work directory
// (MANIFEST.sha256, proteus-output.log, proteus-record.json, state/).
func checkFileName(name, driver string) string {
	dir := "the work directory"
	if driver == "docker" {
		dir = "the container's /etc/proteus"
	}
	switch {
	case name == "" || strings.HasPrefix(name, "/") || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") ||
		strings.ContainsAny(name, "\x00\\"):
		return "want a clean relative path inside " + dir + ", such as nsd.conf or etc/unbound.conf"
	case driver == "process" && (name == "MANIFEST.sha256" || name == "proteus-output.log" || name == "proteus-record.json" || name == "state" || strings.HasPrefix(name, "state/")):
		return "the process driver's own file or directory"
	}
	return ""
}
