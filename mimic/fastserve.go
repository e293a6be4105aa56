package mimic

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// fastServer serves the plainest cleartext HTTP/1.1 requests — GET and HEAD without a body,
// which is nearly all voted traffic — with a lean per-connection loop: no background read
// goroutine, no context, header map clone or response buffering machinery per request, one
// write per response. It refuses nothing itself: a connection that sends anything outside that
// strict subset (another method or version, a body, Content-Length, Transfer-Encoding, Expect,
// Upgrade, an odd Host, bare LF, a header section that is not complete within the first 4 KiB,
// the h2c preface, ...) is handed, with the bytes already read replayed, to the net/http server
// for the rest of its life, and net/http applies every one of its rules (400, 405, 413, 431,
// 501, timeouts). The bytes pass through framingConn either way.
//
// A client that hangs up while its request is being voted on is noticed by a watcher started
// when the handler has run for watchAfter: it cancels the request's context like net/http does.
type fastServer struct {
	s       *http.Server
	ln      net.Listener
	handoff *chanListener
	gw      *Gateway // ServerOptions.Gateway

	mu      sync.Mutex
	conns   map[*fastConn]bool // -> idle
	closing bool
	wg      sync.WaitGroup
}

const watchAfter = 20 * time.Millisecond

type fastConn struct {
	fc           *framingConn
	br           *bufio.Reader
	bw           *bufio.Writer
	remote       string
	ctx          context.Context
	cancel       context.CancelFunc
	w            fastWriter
	watch        *time.Timer
	watched      chan struct{}
	rdl, wdl     lazyDeadline // owned by the serving goroutine (or the executor request streaming its answer)
	writeTimeout time.Duration
	moreHead     func()     // starts the read-header timeout (nil: none); see readRequestHead
	wmu          sync.Mutex // orders the watcher's deadline change against the end of the handler
	handling     bool
}

func newFastServer(s *http.Server, ln net.Listener) *fastServer {
	return &fastServer{s: s, ln: ln, handoff: newChanListener(ln.Addr()), conns: map[*fastConn]bool{}}
}

// serve accepts connections until the listener is closed.
func (f *fastServer) serve() error {
	var backoff time.Duration
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait and retry, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			f.handoff.Close()
			return err
		}
		backoff = 0
		fc := &framingConn{Conn: c, maxHead: f.s.MaxHeaderBytes}
		f.wg.Add(1)
		go f.serveConn(fc)
	}
}

// shutdown stops accepting, closes idle connections and waits for the busy ones to finish
// their request (or for ctx).
func (f *fastServer) shutdown(ctx context.Context) error {
	f.ln.Close()
	f.mu.Lock()
	f.closing = true
	for c, idle := range f.conns {
		if idle {
			c.fc.Close()
		}
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		for c := range f.conns {
			c.fc.Close()
		}
		f.mu.Unlock()
		return ctx.Err()
	}
}

// setIdle records whether c waits for a request; false when the server is shutting down.
func (f *fastServer) setIdle(c *fastConn, idle bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.conns[c] = idle
	return true
}

var (
	fastReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	fastWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

func (f *fastServer) serveConn(fc *framingConn) {
	defer f.wg.Done()
	c := &fastConn{fc: fc, remote: fc.RemoteAddr().String(), watched: make(chan struct{}, 1), writeTimeout: f.s.WriteTimeout}
	if t := f.s.ReadHeaderTimeout; t > 0 {
		c.moreHead = func() { c.readDeadline(time.Now(), t) }
	}
	c.br = fastReaders.Get().(*bufio.Reader)
	c.br.Reset(fc)
	c.bw = fastWriters.Get().(*bufio.Writer)
	c.bw.Reset(fc)
	// The connection's context carries its framingConn, as net/http's does (connContext), so
	// framingFault reads the marks the scan left instead of measuring every parsed head again.
	c.ctx, c.cancel = context.WithCancel(context.WithValue(context.Background(), connKey{}, fc))
	c.watch = time.AfterFunc(time.Hour, c.watchClient)
	c.watch.Stop()
	handedOff := false
	defer func() {
		c.cancel()
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		if !handedOff {
			fc.Close()
		}
		c.br.Reset(nil)
		c.bw.Reset(nil)
		fastReaders.Put(c.br)
		fastWriters.Put(c.bw)
		c.w = fastWriter{}
	}()
	s := f.s
	for first := true; ; first = false {
		if c.br.Buffered() == 0 {
			if !f.setIdle(c, true) {
				return
			}
			wait := s.IdleTimeout
			if first {
				wait = s.ReadHeaderTimeout
			}
			if wait > 0 {
				c.readDeadline(time.Now(), wait)
			}
			if _, err := c.br.Peek(1); err != nil {
				return
			}
		}
		if !f.setIdle(c, false) {
			return
		}
		head, ok, err := readRequestHead(c.br, s.MaxHeaderBytes, c.moreHead)
		if err != nil {
			return
		}
		var r *http.Request
		var closeAfter bool
		if ok {
			r, closeAfter, ok = parseRequestHead(head)
		}
		if !ok || fc.ambiguous.Load() {
			prefix, _ := c.br.Peek(c.br.Buffered())
			hc := &handoffConn{framingConn: fc, prefix: bytes.Clone(prefix), gw: f.gw}
			fc.SetDeadline(time.Time{})
			if f.handoff.give(hc) {
				handedOff = true
			}
			return
		}
		c.br.Discard(len(head))
		r.RemoteAddr = c.remote
		r = r.WithContext(c.ctx)
		c.writeDeadline()
		if !c.handle(s.Handler, r) {
			return
		}
		if closeAfter || c.w.closeAfter || c.ctx.Err() != nil {
			return
		}
	}
}

// writeDeadline bounds the writes of the response to come to the write timeout from now.
func (c *fastConn) writeDeadline() {
	if t := c.writeTimeout; t > 0 {
		if at, move := c.wdl.next(time.Now().Add(t), t); move {
			c.fc.SetWriteDeadline(at)
		}
	}
}

// readDeadline bounds the next reads to d after now (see lazyDeadline).
func (c *fastConn) readDeadline(now time.Time, d time.Duration) {
	if at, move := c.rdl.next(now.Add(d), d); move {
		c.fc.SetReadDeadline(at)
	}
}

// handle runs h and writes its response; false when the connection must close.
func (c *fastConn) handle(h http.Handler, r *http.Request) (ok bool) {
	c.w.reset(r.Method == http.MethodHead, c.bw)
	c.w.conn = c
	c.wmu.Lock()
	c.handling = true
	c.wmu.Unlock()
	c.watch.Reset(watchAfter)
	defer func() {
		c.wmu.Lock()
		c.handling = false
		c.wmu.Unlock()
		if !c.watch.Stop() {
			// The watcher ran or runs: stop its read and wait for it.
			c.fc.SetReadDeadline(pastDeadline)
			<-c.watched
			c.fc.SetReadDeadline(time.Time{})
			c.rdl.forget()
		}
		if p := recover(); p != nil {
			ok = false
		}
	}()
	h.ServeHTTP(&c.w, r)
	return c.w.finish() == nil
}

// watchClient waits for the client to send more or hang up while its request is handled,
// and cancels the connection's context when it hangs up.
func (c *fastConn) watchClient() {
	defer func() { c.watched <- struct{}{} }()
	c.wmu.Lock()
	if !c.handling || c.br.Buffered() > 0 {
		c.wmu.Unlock()
		return
	}
	c.fc.SetReadDeadline(time.Time{})
	c.wmu.Unlock()
	if _, err := c.br.Peek(1); err != nil {
		c.wmu.Lock()
		if c.handling {
			c.cancel()
		}
		c.wmu.Unlock()
	}
}

// readRequestHead returns the buffered header section of the next request, reading more as
// needed; ok is false when it is not a plain CRLF-delimited section complete within the
// reader's buffer and maxHeader bytes (the caller hands the connection to net/http).
//
// beforeMore, when not nil, is called once, before the first read beyond what is buffered: a
// header section usually arrives whole with its first byte, and only one that needs more reads
// is bounded by the read-header timeout from then on.
func readRequestHead(br *bufio.Reader, maxHeader int, beforeMore func()) (head []byte, ok bool, err error) {
	limit := br.Size()
	if maxHeader > 0 && maxHeader < limit {
		limit = maxHeader
	}
	for {
		buf, _ := br.Peek(br.Buffered())
		j := bytes.Index(buf, lfCRLF)
		before := buf // a bare LF ahead of the section's end ends it
		if j >= 0 {
			before = buf[:j+1]
		}
		if bytes.Contains(before, lfLF) {
			return nil, false, nil
		}
		if j >= 0 {
			return buf[:j+3], true, nil
		}
		if len(buf) >= limit {
			return nil, false, nil
		}
		if beforeMore != nil {
			beforeMore()
			beforeMore = nil
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if len(buf) > 0 && !isTimeout(err) {
				return nil, false, nil // let net/http answer what it can
			}
			return nil, false, err
		}
	}
}

var (
	lfLF   = []byte("\n\n")
	lfCRLF = []byte("\n\r\n")
)

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// parseRequestHead parses a GET or HEAD request head in the strict subset described at
// fastServer; ok is false for anything else.
func parseRequestHead(head []byte) (r *http.Request, closeAfter, ok bool) {
	all := string(head)
	end := indexCRLF(all, 0)
	if end < 0 {
		return nil, false, false
	}
	line := all[:end]
	var method string
	switch {
	case len(line) > 4 && line[:4] == "GET ":
		method, line = http.MethodGet, line[4:]
	case len(line) > 5 && line[:5] == "HEAD ":
		method, line = http.MethodHead, line[5:]
	default:
		return nil, false, false
	}
	if len(line) < 10 || line[len(line)-9:] != " HTTP/1.1" {
		return nil, false, false
	}
	target := line[:len(line)-9]
	if target == "" || target[0] != '/' {
		return nil, false, false
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return nil, false, false
		}
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false, false
	}
	h := make(http.Header, 8)
	host, hosts := "", 0
	for off := end + 2; ; {
		e := indexCRLF(all, off)
		if e < 0 {
			return nil, false, false
		}
		if e == off {
			break
		}
		ln := all[off:e]
		off = e + 2
		name, v, ok := splitHeaderField(ln)
		if !ok {
			return nil, false, false
		}
		k := canonicalName(name)
		switch k {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings", "Te", "Trailer":
			return nil, false, false
		case "Host":
			hosts++
			if hosts > 1 || !plainHost(v) {
				return nil, false, false
			}
			host = v
			continue // net/http moves it to Request.Host too
		case "Connection":
			if httpTokenContains(v, "close") {
				closeAfter = true
			}
		}
		h[k] = append(h[k], v)
	}
	if hosts != 1 {
		return nil, false, false
	}
	return &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: target,
		Close:      closeAfter,
	}, closeAfter, true
}

// plainHost reports whether a Host value is a non-empty name or address with an optional port,
// in characters no parser reads differently.
func plainHost(v string) bool {
	if v == "" || len(v) > 255 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// fastWriter buffers one response and writes it at once, head and body in one write; a body
// over fastBufferMax, or one the handler flushes, is streamed instead: the head goes out with
// the Content-Length the handler set (chunked without one) and the body is written through.
// The header is serialized when the status is set (the handler's header values may be reused
// once it returns, as with net/http, which clones them at that point).
type fastWriter struct {
	h          http.Header
	status     int
	hdr        []byte // serialized status line and header fields, without the framing ones
	body       []byte
	bw         *bufio.Writer // the connection
	conn       *fastConn     // nil in tests: no write deadline to move
	head       bool
	closeAfter bool
	connInHead bool // Connection: close is among the serialized fields
	hasType    bool
	clOff      int   // where in hdr a Content-Length goes (by name, see snapshotOf)
	ctOff      int   // ... and a sniffed Content-Type
	length     int64 // the handler's Content-Length; -1: none (or not a number)

	streaming bool  // the head was written: body bytes go straight to bw
	chunked   bool  // ... with chunked framing, for want of a length
	sent      int64 // body bytes written through
	err       error // the first write error; the connection is then closed
}

// fastBufferMax is the largest body fastWriter holds back to send with the head.
const fastBufferMax = 64 << 10

// errShortBody is the end of a streamed response shorter than its Content-Length.
var errShortBody = errors.New("mimic: response body shorter than its Content-Length")

func (w *fastWriter) reset(head bool, bw *bufio.Writer) {
	if w.h == nil || len(w.h) > 32 {
		w.h = make(http.Header, 8)
	} else {
		clear(w.h)
	}
	if cap(w.body) > 2*fastBufferMax {
		w.body = nil
	}
	if cap(w.hdr) > 64<<10 {
		w.hdr = nil
	}
	*w = fastWriter{h: w.h, hdr: w.hdr[:0], body: w.body[:0], bw: bw, head: head, length: -1}
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 && code <= 999 {
		w.status = code
		w.snapshot()
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.head || !bodyAllowed(w.status) {
		return len(p), nil
	}
	if !w.streaming {
		if len(w.body)+len(p) <= fastBufferMax {
			w.body = append(w.body, p...)
			return len(p), nil
		}
		w.startStream(p)
	}
	return w.writeThrough(p)
}

// Flush sends what is buffered, the head first (http.Flusher).
func (w *fastWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.head || !bodyAllowed(w.status) {
		return // finish writes the head
	}
	if !w.streaming {
		w.startStream(nil)
	}
	if w.err == nil {
		w.err = w.bw.Flush()
	}
}

// startStream writes the head with its framing and the body buffered so far; first is the
// data about to be written (for the sniffed Content-Type when nothing is buffered).
func (w *fastWriter) startStream(first []byte) {
	w.streaming = true
	sniff := w.body
	if len(sniff) == 0 {
		sniff = first
	}
	w.chunked = w.length < 0
	w.writeHead(w.length, sniff, w.chunked)
	if len(w.body) > 0 {
		w.writeThrough(w.body)
		w.body = w.body[:0]
	}
}

// writeThrough writes body bytes of a streamed response: no more than its Content-Length.
// The write timeout counts from each write, so a long download that keeps moving is not cut
// off, while a client that stops reading still is.
func (w *fastWriter) writeThrough(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.conn != nil {
		w.conn.writeDeadline()
	}
	var over error
	if !w.chunked && int64(len(p)) > w.length-w.sent {
		p, over = p[:w.length-w.sent], http.ErrContentLength
	}
	if len(p) == 0 {
		return 0, over
	}
	if w.chunked {
		w.bw.Write(strconv.AppendUint(w.bw.AvailableBuffer(), uint64(len(p)), 16))
		w.bw.WriteString("\r\n")
	}
	n, err := w.bw.Write(p)
	if w.chunked && err == nil {
		_, err = w.bw.WriteString("\r\n")
	}
	w.sent += int64(n)
	if err != nil {
		w.err = err
		return n, err
	}
	return n, over
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// startProxied sets status and h (minus its hop-by-hop and identifying fields, see
// keepStreamed) as the head of a single route's executor response whose body, of length
// bytes (-1: unknown), is written next. For HEAD the executor's own Content-Length stays.
func (w *fastWriter) startProxied(status int, h http.Header, length int64) {
	w.status = status
	w.snapshotOf(h, keepStreamed, "", "")
	if !w.head {
		w.length = length
	}
}

// startAnswer sets status and the headers of h that keep passes as the head of a voted
// answer, with the gateway's etag and server (none when empty), whose body is length bytes
// (for HEAD too: its Content-Length is the voted body's).
func (w *fastWriter) startAnswer(status int, h http.Header, keep func(string) bool, etag, server string, length int64) {
	w.status = status
	w.snapshotOf(h, keep, etag, server)
	w.length = length
}

// snapshot serializes the status line and the handler's header.
func (w *fastWriter) snapshot() { w.snapshotOf(w.h, nil, "", "") }

// snapshotOf serializes the status line and the fields of h, in the gateway's one order (by
// name, see headOrder in answer.go), with the gateway's Date and, when not empty, its etag and
// server among them; the framing fields (Content-Length, a sniffed Content-Type) are added in
// their places when the head is written (see writeHead). keep, when not nil, says which of an
// executor's fields go out (its Connection header is about its connection to the gateway, not
// the client's; its Date and Content-Length are the gateway's business).
func (w *fastWriter) snapshotOf(h http.Header, keep func(string) bool, etag, server string) {
	b := append(w.hdr[:0], "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(w.status), 10)
	b = append(b, ' ')
	if t := http.StatusText(w.status); t != "" {
		b = append(b, t...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(w.status), 10)
	}
	b = append(b, "\r\n"...)
	var names headOrder
	hasDate := false
	for k, vs := range h {
		if keep != nil && k != "Content-Length" && !keep(k) {
			continue
		}
		switch k {
		case "Content-Length":
			if len(vs) == 1 && keep == nil {
				w.length = parseLength(vs[0])
			} else if len(vs) == 1 && w.head {
				w.length = parseLength(vs[0]) // a single route's HEAD: the executor's
			}
			continue
		case "Transfer-Encoding", "Trailer":
			continue
		case "Connection":
			for _, v := range vs {
				if httpTokenContains(v, "close") {
					w.closeAfter = true
				}
			}
			if !w.closeAfter {
				continue
			}
			w.connInHead = true // written as "close", in its place (as net/http writes the handler's)
		case "Date":
			if keep != nil {
				continue
			}
			hasDate = true
		case "Etag":
			if etag != "" {
				continue
			}
		case "Server":
			if server != "" {
				continue
			}
		case "Content-Type":
			w.hasType = true
		}
		if !validName(k) {
			continue
		}
		names.add(k)
	}
	if !hasDate {
		names.add("Date")
	}
	if etag != "" {
		names.add("Etag")
	}
	if server != "" {
		names.add("Server")
	}
	names.sort()
	w.clOff, w.ctOff = -1, -1
	for _, k := range names.list() {
		if w.clOff < 0 && k > "Content-Length" {
			w.clOff = len(b)
		}
		if w.ctOff < 0 && k > "Content-Type" {
			w.ctOff = len(b)
		}
		switch {
		case k == "Date" && !hasDate:
			b = appendField(b, k, httpDate())
			continue
		case k == "Etag" && etag != "":
			b = appendField(b, k, etag)
			continue
		case k == "Server" && server != "":
			b = appendField(b, k, server)
			continue
		case k == "Connection":
			b = appendField(b, k, "close")
			continue
		}
		for _, v := range h[k] {
			b = appendField(b, k, v)
		}
	}
	if w.clOff < 0 {
		w.clOff = len(b)
	}
	if w.ctOff < 0 {
		w.ctOff = len(b)
	}
	w.hdr = b
}

// appendField appends one header field, a line break in its value written as a space.
func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' {
			c = ' '
		}
		b = append(b, c)
	}
	return append(b, "\r\n"...)
}

// writeHead writes the serialized head with its framing fields in their places: the
// Content-Length (length >= 0) and a Content-Type sniffed from body when the handler set none
// where they sort, then Connection: close when the connection closes and Transfer-Encoding:
// chunked when chunked, as net/http adds them after the handler's fields.
func (w *fastWriter) writeHead(length int64, body []byte, chunked bool) {
	bw, b := w.bw, w.hdr
	bw.Write(b[:w.clOff])
	if length >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		bw.WriteString("\r\n")
	}
	bw.Write(b[w.clOff:w.ctOff])
	if !w.hasType && len(body) > 0 {
		bw.WriteString("Content-Type: ")
		bw.WriteString(http.DetectContentType(body))
		bw.WriteString("\r\n")
	}
	bw.Write(b[w.ctOff:])
	if w.closeAfter && !w.connInHead {
		bw.WriteString("Connection: close\r\n")
	}
	if chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	_, err := bw.WriteString("\r\n")
	if err != nil && w.err == nil {
		w.err = err
	}
}

// finish writes the response like net/http would: a Date when none is set, a sniffed
// Content-Type for a body without one, Content-Length from the body (HEAD: the handler's).
// A streamed response is ended instead; an error means the connection must close.
func (w *fastWriter) finish() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.streaming {
		if w.chunked && w.err == nil {
			_, w.err = w.bw.WriteString("0\r\n\r\n")
		}
		if w.err == nil {
			w.err = w.bw.Flush()
		}
		if w.err == nil && !w.chunked && w.sent < w.length {
			w.err = errShortBody
		}
		return w.err
	}
	allowed := bodyAllowed(w.status)
	var length int64 = -1
	var sniff []byte
	switch {
	case allowed && !w.head:
		length, sniff = int64(len(w.body)), w.body
	case allowed && w.length >= 0:
		length = w.length
	}
	w.writeHead(length, sniff, false)
	w.bw.Write(w.body)
	return w.bw.Flush()
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	sec int64
	s   string
}

func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}

// handoffConn replays the bytes the fast loop read before handing the connection to net/http.
type handoffConn struct {
	*framingConn
	prefix []byte
	gw     *Gateway // whose identity net/http's own refusals present (nil: the default)
}

func (c *handoffConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.framingConn.Read(p)
}

// chanListener is the listener net/http serves the handed-off connections from.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) give(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
