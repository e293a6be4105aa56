package mimic

import (
	"hash/maphash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The gateway builds the head of every answer itself. From a voted answer only the headers
// that took part in the vote (and so are equal across the winning group) reach the client;
// Date, Content-Length, a Server value of its own (none by default) and an ETag derived from
// the body it sends are the gateway's. Redirects and error answers are "boilerplate": every
// server words them its own way, so only their status (and a redirect's Location, made
// relative) is voted on and the body is the gateway's own page for that status, which also
// says nothing about which implementation answered. A route that compares error bodies
// (Route.CompareErrorBodies) votes on them like on any other answer.

// boilerplate reports whether a response of this status is voted on by status (and Location)
// only and answered with the gateway's own page.
func boilerplate(status int, compareErrors bool) bool {
	switch {
	case status >= 300 && status < 400:
		return status != http.StatusNotModified
	case status >= 400:
		return !compareErrors
	}
	return false
}

// relativeLocation reduces a redirect target to what equivalent servers agree on: an absolute
// URL pointing back at the request's own host (whatever port: servers put their own listening
// port in it) or at the executor itself becomes an absolute path; a relative one is resolved
// against the request path. Anything else (another site) is kept as it is, and is compared.
func relativeLocation(loc, reqHost, execURL, reqPath string) string {
	if loc == "" {
		return ""
	}
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if u.Scheme == "" && u.Host == "" {
		base := &url.URL{Path: reqPath}
		return base.ResolveReference(u).RequestURI() + fragment(u)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return loc
	}
	if sameHost(u.Host, reqHost) || execURL != "" && sameHost(u.Host, strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(execURL, "http://"), "https://"), "/")) {
		return u.RequestURI() + fragment(u)
	}
	return loc
}

func fragment(u *url.URL) string {
	if u.Fragment == "" {
		return ""
	}
	return "#" + u.EscapedFragment()
}

// sameHost compares the host names of two host[:port] values, case-insensitively.
func sameHost(a, b string) bool {
	return b != "" && strings.EqualFold(hostOnly(a), hostOnly(b))
}

func hostOnly(hp string) string {
	if i := strings.LastIndexByte(hp, ':'); i >= 0 && !strings.Contains(hp[i:], "]") {
		return hp[:i]
	}
	return hp
}

// gatewayPage is the gateway's own body for a boilerplate status.
func gatewayPage(status int) string {
	text := http.StatusText(status)
	if text == "" {
		text = "Status " + strconv.Itoa(status)
	}
	return strconv.Itoa(status) + " " + text + "\n"
}

// etagOf is the gateway's entity tag for a body it sends, from the body's hash.
func etagOf(sum uint64) string {
	// Thirteen base-32 digits, zero-padded: one length whichever the body, so not even the size
	// of a response head differs between two answers.
	const digits = "0123456789abcdefghijklmnopqrstuv"
	b := [2 + 13 + 1]byte{'"', 'p', 15: '"'}
	for i := 14; i >= 2; i-- {
		b[i] = digits[sum&31]
		sum >>= 5
	}
	return string(b[:])
}

// etagMatches reports whether an If-None-Match value names etag (or is "*"); weak
// comparison, as RFC 9110 §13.1.2 asks for GET and HEAD.
func etagMatches(inm, etag string) bool {
	for _, part := range strings.Split(inm, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || strings.TrimPrefix(part, "W/") == etag {
			return true
		}
	}
	return false
}

// answerHeader says which of a voted response's headers reach the client: the ones compared
// in the vote, never the volatile, ignored or learned ones, never hop-by-hop ones.
type answerHeader struct{ noise *noiseSet }

func (a answerHeader) keep(k string) bool {
	return !a.noise.ignoresHeader(k) && !isHopByHop(k) && !identifying(k)
}

// identifying reports whether an executor header names the software that answered, or is
// in its own format (an ETag: nginx's, lighttpd's and others' are told apart at a glance);
// single routes, whose heads are not voted, drop these too, and the executor's Date.
func identifying(k string) bool {
	switch k {
	case "Server", "X-Powered-By", "Via", "X-Aspnet-Version", "X-Aspnetmvc-Version", "X-Runtime", "X-Generator",
		"Etag", "Date", "X-Backend-Server", "X-Served-By", "X-Server", "X-Varnish", "X-Cache", "X-Drupal-Cache",
		"X-Litespeed-Cache", "X-Turbo-Charged-By", "X-Powered-Cms", "X-Mod-Pagespeed", "X-Page-Speed":
		return true
	}
	return false
}

func keepStreamed(k string) bool { return !isHopByHop(k) && !identifying(k) }

// writeVoted sends the decided answer: a boilerplate status as the gateway's page, anything
// else with the voted headers, the gateway's own ETag and the body (the normalized body when
// the winning group shares no raw bytes, so nothing unvoted, such as white space, rides along).
func (g *Gateway) writeVoted(w http.ResponseWriter, r *http.Request, c *call) {
	win := c.win
	if win.statusOnly {
		if win.location != "" {
			w.Header()["Location"] = []string{win.location}
		}
		g.writePage(w, c.pages, win.status)
		return
	}
	win, body, normalized := c.ballot.answer(win)
	length := int64(len(body))
	if win.bb.spooled() {
		length = win.bb.n // written from its file (see spool.go)
	}
	etag := etagOf(win.rawSum)
	if normalized {
		etag = etagOf(maphash.Bytes(c.ballot.seed, body))
	}
	status := win.status
	if status == http.StatusOK && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if inm := r.Header["If-None-Match"]; len(inm) > 0 && etagMatches(strings.Join(inm, ","), etag) {
			status = http.StatusNotModified
		}
	}
	keep := answerHeader{c.ballot.noise}
	if fw, ok := w.(*fastWriter); ok && len(fw.h) == 0 {
		fw.startAnswer(status, win.header, keep.keep, etag, g.identity().id.Server, length)
	} else {
		out := w.Header()
		for k, vs := range win.header {
			if keep.keep(k) {
				out[k] = vs
			}
		}
		out["Etag"] = []string{etag}
		if s := g.identity().id.Server; s != "" {
			out["Server"] = []string{s}
		}
		// Set here, not by net/http after the other fields, so the order is the fast path's.
		out["Date"] = []string{httpDate()}
		if _, ok := out["Content-Type"]; !ok && len(body) > 0 && bodyAllowed(status) && r.Method != http.MethodHead {
			out["Content-Type"] = []string{http.DetectContentType(body)}
		}
		if bodyAllowed(status) {
			out["Content-Length"] = []string{strconv.FormatInt(length, 10)}
		}
		w.WriteHeader(status)
	}
	switch {
	case r.Method == http.MethodHead || !bodyAllowed(status):
	case win.bb.spooled():
		win.bb.writeTo(w)
	default:
		w.Write(body)
	}
}
