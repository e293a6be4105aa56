package mimic

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
)

// What a client sees of the gateway must not say which implementation answered (obscuration):
// every answer's head is the gateway's (see answer.go), in one order of fields, and every page
// the gateway sends instead of an executor's (errors, redirects, refusals, what net/http refuses
// before the gateway sees a request) comes from the identity it presents: a Server value (or
// none) and a page per status. The identity can follow the game's deception signal
// (SetSignal): one per signal, so what an attacker fingerprints is what the game chose to show.

// Page is what the gateway answers with for a status, instead of any executor's page.
type Page struct {
	ContentType string // default text/plain; charset=utf-8
	Body        []byte
}

// Identity is what the gateway presents of itself.
type Identity struct {
	Server string       // the Server value of every answer; empty: none
	Pages  map[int]Page // per status; a status without one gets the plain default page
}

// presented is the identity in force, with the signal it belongs to ("" without signals).
type presented struct {
	signal string
	id     Identity
}

// identity returns the identity in force.
func (g *Gateway) identity() *presented { return g.ident.Load() }

// Signal returns the signal whose identity the gateway presents ("" when it has none).
func (g *Gateway) Signal() string { return g.identity().signal }

// SetSignal switches the gateway to the identity of signal (Options.Identities). A signal
// without one is ignored and reported false: the gateway keeps what it presents.
func (g *Gateway) SetSignal(signal string) bool {
	id, ok := g.o.Identities[signal]
	if !ok {
		return false
	}
	if old := g.ident.Swap(&presented{signal: signal, id: id}); old.signal != signal {
		g.log.Info("gateway identity follows the signal", "signal", signal, "previous", old.signal, "server", id.Server)
	}
	return true
}

// initIdentity sets the identity New starts with: Options.Signal's, else the one of
// Options.ServerHeader and Options.Pages.
func (g *Gateway) initIdentity() {
	if id, ok := g.o.Identities[g.o.Signal]; ok && g.o.Signal != "" {
		g.ident.Store(&presented{signal: g.o.Signal, id: id})
		return
	}
	g.ident.Store(&presented{id: Identity{Server: g.o.ServerHeader, Pages: g.o.Pages}})
}

// checkIdentities refuses what would let an executor's identity or a header injection
// through: a Server value or content type that is not one line, a page for a status that is
// not one, a start signal without an identity.
func checkIdentities(o Options) error {
	check := func(where string, id Identity) error {
		if !headerValue(id.Server) {
			return fmt.Errorf("mimic: %sserver %q is not one line of visible characters", where, id.Server)
		}
		return checkPages(where, id.Pages)
	}
	if err := check("", Identity{Server: o.ServerHeader, Pages: o.Pages}); err != nil {
		return err
	}
	for sig, id := range o.Identities {
		if err := check("identity "+sig+": ", id); err != nil {
			return err
		}
	}
	if o.Signal != "" && len(o.Identities) > 0 {
		if _, ok := o.Identities[o.Signal]; !ok {
			return fmt.Errorf("mimic: signal %q has no identity", o.Signal)
		}
	}
	for _, r := range o.Routes {
		if err := checkPages("route "+r.Prefix+": ", r.Pages); err != nil {
			return err
		}
	}
	return nil
}

func checkPages(where string, pages map[int]Page) error {
	for st, pg := range pages {
		if st < 100 || st > 599 || http.StatusText(st) == "" {
			return fmt.Errorf("mimic: %spage for status %d: not a known status", where, st)
		}
		if !headerValue(pg.ContentType) {
			return fmt.Errorf("mimic: %spage for status %d: content type %q is not one line of visible characters", where, st, pg.ContentType)
		}
	}
	return nil
}

// headerValue reports whether v can be sent as a field value as it is.
func headerValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// localHost is the address a client reached, for a request that names no Host.
func localHost(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return "localhost"
}

// pageFor returns the page for status: the route's, else the identity's, else the default.
func (p *presented) pageFor(routePages map[int]Page, status int) Page {
	if pg, ok := routePages[status]; ok {
		return pg
	}
	if pg, ok := p.id.Pages[status]; ok {
		return pg
	}
	return Page{Body: []byte(gatewayPage(status))}
}

const plainType = "text/plain; charset=utf-8"

// writePage sends the gateway's own page for status (the route's, when it has one). Headers
// already set stay only if they are the gateway's own business (Allow, Retry-After,
// Connection, Location); everything else is the page's.
func (g *Gateway) writePage(w http.ResponseWriter, routePages map[int]Page, status int) {
	pg := g.identity().pageFor(routePages, status)
	h := w.Header()
	for k := range h {
		switch k {
		case "Allow", "Retry-After", "Connection", "Location":
		default:
			delete(h, k)
		}
	}
	if s := g.identity().id.Server; s != "" {
		h["Server"] = []string{s}
	}
	ct := pg.ContentType
	if ct == "" {
		ct = plainType
	}
	h["Content-Type"] = []string{ct}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	h["Date"] = []string{httpDate()}
	h["Content-Length"] = []string{strconv.Itoa(len(pg.Body))}
	w.WriteHeader(status)
	w.Write(pg.Body) // dropped for HEAD by either writer
}

// writeOptions answers OPTIONS for a path whose route does not send OPTIONS to the executors:
// the methods the gateway would take there, the same whichever executor would have answered.
func (g *Gateway) writeOptions(w http.ResponseWriter, path string) {
	h := w.Header()
	h["Allow"] = []string{g.allowed(path)}
	if s := g.identity().id.Server; s != "" {
		h["Server"] = []string{s}
	}
	h["Date"] = []string{httpDate()}
	h["Content-Length"] = []string{"0"}
	w.WriteHeader(http.StatusOK)
}

// allowed lists the methods some route takes at path (the read methods when none does).
func (g *Gateway) allowed(path string) string {
	ms := []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete}
	for i := range g.routes {
		for m := range g.routes[i].methods {
			if !slices.Contains(ms, m) {
				ms = append(ms, m)
			}
		}
	}
	var out []byte
	for _, m := range ms {
		if rt, _ := g.routeFor(m, path); rt == nil && m != http.MethodOptions {
			continue
		}
		if len(out) > 0 {
			out = append(out, ", "...)
		}
		out = append(out, m...)
	}
	return string(out)
}

// rawPage is the whole response, head and body, of the gateway's page for status on a
// connection that then closes: what replaces net/http's own answer to a request it refuses
// before any handler runs (see handoffConn.Write). The fields are in the order writePage's
// get from net/http (by name).
func (p *presented) rawPage(status int) []byte {
	pg := p.pageFor(nil, status)
	ct := pg.ContentType
	if ct == "" {
		ct = plainType
	}
	b := make([]byte, 0, 256+len(pg.Body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	b = appendField(b, "Connection", "close")
	b = appendField(b, "Content-Length", strconv.Itoa(len(pg.Body)))
	b = appendField(b, "Content-Type", ct)
	b = appendField(b, "Date", httpDate())
	if p.id.Server != "" {
		b = appendField(b, "Server", p.id.Server)
	}
	b = appendField(b, "X-Content-Type-Options", "nosniff")
	b = append(b, "\r\n"...)
	return append(b, pg.Body...)
}

// netHTTPErrorHeaders are the fields net/http writes, with nothing else, after the status line
// of its own answer to a request it cannot read (net/http's conn.serve: 400, 431, 501, 505).
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// netHTTPError reports whether p is one of net/http's own error answers, written to the
// connection in one piece, and its status.
func netHTTPError(p []byte) (int, bool) {
	if len(p) < 13 || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) || p[12] != ' ' && p[12] != ':' {
		return 0, false
	}
	end := bytes.Index(p, []byte("\r\n"))
	if end < 0 || !bytes.HasPrefix(p[end:], []byte(netHTTPErrorHeaders)) {
		return 0, false
	}
	status, err := strconv.Atoi(string(p[9:12]))
	if err != nil || status < 400 || status > 599 {
		return 0, false
	}
	return status, true
}

// Write sends what net/http writes to a handed-off connection, except its own error answers
// (they would name Go's net/http to any scanner), which become the gateway's page for the
// same status.
func (c *handoffConn) Write(p []byte) (int, error) {
	if status, ok := netHTTPError(p); ok {
		id := defaultIdentity
		if c.gw != nil {
			id = c.gw.identity()
		}
		if _, err := c.framingConn.Write(id.rawPage(status)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.framingConn.Write(p)
}

var defaultIdentity = &presented{}

// headOrder collects the names of an answer's fields and puts them in the gateway's one order,
// by name (net/http writes the fields of a handler's map in that order, so a handed-off
// connection's answers and the fast path's agree); no allocation up to 24 fields.
type headOrder struct {
	n    int
	a    [24]string
	more []string
}

func (o *headOrder) add(k string) {
	if o.more == nil && o.n < len(o.a) {
		o.a[o.n] = k
		o.n++
		return
	}
	if o.more == nil {
		o.more = append(make([]string, 0, 2*len(o.a)), o.a[:o.n]...)
	}
	o.more = append(o.more, k)
}

func (o *headOrder) list() []string {
	if o.more != nil {
		return o.more
	}
	return o.a[:o.n]
}

func (o *headOrder) sort() {
	l := o.list()
	for i := 1; i < len(l); i++ { // insertion sort: a dozen names, mostly short
		for j := i; j > 0 && l[j] < l[j-1]; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}
