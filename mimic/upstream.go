package mimic

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// h1Client is the gateway's own HTTP/1.1 client for http:// executors. Compared with
// http.Transport it writes the request and reads the response in the calling goroutine (the
// Transport hands each request to a per-connection writer goroutine and each response back
// from a reader goroutine), which saves two goroutine wake-ups per executor request on the
// hot path. It keeps idle keep-alive connections per executor, retries once on a fresh
// connection when a reused one turns out to have been closed by the executor before it sent
// a byte (the request bodies are buffered, so that is safe), and honours the request context
// for the deadline and for cancellation. https:// executors use http.Transport.
type h1Client struct {
	maxIdle int
	maxHead int64 // bytes read from the connection while a response head is awaited
	dialer  net.Dialer
	tls     http.RoundTripper

	mu   sync.Mutex
	idle map[string][]*h1Conn // host:port -> idle connections, most recent last
}

type h1Conn struct {
	nc   net.Conn
	hr   headReader // what br reads from
	br   *bufio.Reader
	bw   *bufio.Writer
	idle time.Time    // when it was put back
	dl   lazyDeadline // read and write deadline, when set through a group
	lr   io.LimitedReader
}

// h1IdleTimeout drops idle connections older than this instead of trying them.
const h1IdleTimeout = 50 * time.Second

// newH1Client returns a client keeping up to maxIdlePerHost idle connections per executor
// and reading at most maxHead bytes of response head (interim responses included) from an
// executor, on its own connections and through its https:// transport alike.
func newH1Client(maxIdlePerHost int, maxHead int64) *h1Client {
	tr := NewTransport(maxIdlePerHost)
	tr.MaxResponseHeaderBytes = maxHead
	return &h1Client{
		maxIdle: maxIdlePerHost,
		maxHead: maxHead,
		dialer:  net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second},
		tls:     tr,
		idle:    map[string][]*h1Conn{},
	}
}

var errUnusableConn = errors.New("mimic: connection closed by the executor before answering")

// h1Request is one executor request: written directly (no http.Request, no header copy per
// executor). Header values come from net/http's parser, which refuses CR, LF and NUL in them.
type h1Request struct {
	ctx    context.Context
	addr   string // host:port to connect to
	method string
	uri    string // origin-form request target
	host   string // Host header
	header http.Header
	filter *outFilter // optional: which of header to send, and X-Forwarded-For
	body   []byte

	// Optional: when group is set, the connection's deadline is deadline (which must be the
	// context's, timeout after the call started; it may fire a little later, see lazyDeadline)
	// and cancellation comes through the group instead of a context.AfterFunc.
	group    *connGroup
	deadline time.Time
	timeout  time.Duration
}

// connGroup holds the connections of one call's executor requests in flight, so that
// cancelling the call interrupts them all at once.
type connGroup struct {
	mu        sync.Mutex
	cancelled bool
	conns     []net.Conn
}

func (g *connGroup) reset() {
	g.mu.Lock()
	g.cancelled = false
	clear(g.conns)
	g.conns = g.conns[:0]
	g.mu.Unlock()
}

// add registers c; false when the group is already cancelled.
func (g *connGroup) add(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancelled {
		return false
	}
	g.conns = append(g.conns, c)
	return true
}

// remove unregisters c; false when the group was cancelled while c was in use (its
// deadline is then in the past: it must be closed).
func (g *connGroup) remove(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, o := range g.conns {
		if o == c {
			last := len(g.conns) - 1
			g.conns[i] = g.conns[last]
			g.conns[last] = nil
			g.conns = g.conns[:last]
			return !g.cancelled
		}
	}
	return !g.cancelled
}

// cancel interrupts every registered connection and refuses new ones.
func (g *connGroup) cancel() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cancelled = true
	for _, c := range g.conns {
		c.SetDeadline(pastDeadline)
	}
}

func (r *h1Request) write(bw *bufio.Writer) error {
	bw.WriteString(r.method)
	bw.WriteByte(' ')
	bw.WriteString(r.uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.host)
	bw.WriteString("\r\n")
	for k, vs := range r.header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Connection":
			continue // written by the client itself, never from header
		}
		if r.filter != nil && r.filter.skip(k) {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if r.filter != nil && r.filter.setXFF {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(r.filter.xff)
		bw.WriteString("\r\n")
	}
	if len(r.body) > 0 || (r.method != http.MethodGet && r.method != http.MethodHead && r.method != http.MethodOptions) {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(r.body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(r.body)
	return bw.Flush()
}

var (
	getRequest  = &http.Request{Method: http.MethodGet}
	headRequest = &http.Request{Method: http.MethodHead}
)

// fetch sends req and reads at most limit+1 body bytes into buf. It returns the status, the
// header and the number of body bytes read.
//
// When the response head takes the fast path, its header is filled into h, which must be
// empty (nil: a new map), with vals as scratch space for the values (see parseHead).
func (c *h1Client) fetch(req *h1Request, buf io.ReaderFrom, limit int64, h http.Header, vals *[]string) (int, http.Header, int64, error) {
	for attempt := 0; ; attempt++ {
		// The retry dials: the other idle connections are most likely just as stale (an
		// executor that closes idle connections after a few seconds closed them all).
		conn, reused, err := c.get(req.ctx, req.addr, req.deadline, attempt > 0)
		if err != nil {
			// A dial the call cancelled reads "operation was canceled", which is not
			// context.Canceled: say what it is, so it is not counted against the executor.
			return 0, nil, 0, c.wrap(req.ctx, err)
		}
		status, hdr, n, err := c.exchange(conn, req, buf, limit, h, vals)
		if err == nil {
			return status, hdr, n, nil
		}
		if reused && attempt == 0 && errors.Is(err, errUnusableConn) {
			continue
		}
		return 0, nil, 0, err
	}
}

// get returns an idle connection to host or dials one (by deadline, when it is set); fresh:
// always dial.
func (c *h1Client) get(ctx context.Context, host string, deadline time.Time, fresh bool) (*h1Conn, bool, error) {
	now := time.Now()
	c.mu.Lock()
	if l := c.idle[host]; len(l) > 0 && !fresh {
		conn := l[len(l)-1]
		l[len(l)-1] = nil
		c.idle[host] = l[:len(l)-1]
		if now.Sub(conn.idle) <= h1IdleTimeout {
			c.mu.Unlock()
			return conn, true, nil
		}
		conn.nc.Close() // the newest is too old: so are the rest, drop them all
		for _, o := range c.idle[host] {
			o.nc.Close()
		}
		delete(c.idle, host)
	}
	c.mu.Unlock()
	d := c.dialer
	if !deadline.IsZero() {
		d.Deadline = deadline
	}
	nc, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	conn := &h1Conn{nc: nc, bw: bufio.NewWriterSize(nc, 4096)}
	conn.hr.nc = nc
	conn.br = bufio.NewReaderSize(&conn.hr, 4096)
	return conn, false, nil
}

func (c *h1Client) put(host string, conn *h1Conn) {
	conn.idle = time.Now()
	c.mu.Lock()
	if len(c.idle[host]) < c.maxIdle {
		c.idle[host] = append(c.idle[host], conn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	conn.nc.Close()
}

// CloseIdle closes every idle connection.
func (c *h1Client) CloseIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, l := range c.idle {
		for _, conn := range l {
			conn.nc.Close()
		}
		delete(c.idle, h)
	}
}

var pastDeadline = time.Unix(1, 0)

func (c *h1Client) exchange(conn *h1Conn, req *h1Request, buf io.ReaderFrom, limit int64, h http.Header, vals *[]string) (int, http.Header, int64, error) {
	ctx := req.ctx
	keep := false
	if g := req.group; g != nil {
		if !c.enter(conn, req) {
			return 0, nil, 0, c.wrap(ctx, context.Canceled)
		}
		defer func() { c.leave(conn, req, keep) }()
	} else {
		// The context's deadline bounds the exchange; cancellation moves the connection's
		// deadline into the past. A connection whose exchange was cancelled is closed, never
		// reused. A deadline left from an exchange through a group is lifted first.
		if !conn.dl.at.IsZero() {
			conn.nc.SetDeadline(time.Time{})
			conn.dl.forget()
		}
		stop := context.AfterFunc(ctx, func() { conn.nc.SetDeadline(pastDeadline) })
		defer func() {
			if !stop() || !keep {
				conn.nc.Close()
				return
			}
			c.put(req.addr, conn)
		}()
	}
	if err := c.send(conn, req); err != nil {
		return 0, nil, 0, err
	}
	status, hdr, n, ok, err := c.readResponse(conn, req, buf, limit, h, vals)
	keep = ok
	return status, hdr, n, err
}

// enter readies conn for req's exchange through its group: the deadline set, the connection
// registered for cancellation. False (conn closed) when the group is already cancelled.
func (c *h1Client) enter(conn *h1Conn, req *h1Request) bool {
	if at, move := conn.dl.next(req.deadline, req.timeout); move {
		conn.nc.SetDeadline(at)
	}
	if !req.group.add(conn.nc) {
		conn.nc.Close()
		return false
	}
	return true
}

// leave ends an exchange begun by enter: conn goes back to the idle connections when keep is
// true and the group was not cancelled meanwhile, and is closed otherwise.
func (c *h1Client) leave(conn *h1Conn, req *h1Request, keep bool) {
	if !req.group.remove(conn.nc) || !keep {
		conn.nc.Close()
		return
	}
	c.put(req.addr, conn)
}

// send writes req on conn. A reset means the executor had closed the connection and the
// request never arrived whole: errUnusableConn.
func (c *h1Client) send(conn *h1Conn, req *h1Request) error {
	if err := req.write(conn.bw); err != nil {
		if req.ctx.Err() == nil && isReset(err) {
			return errUnusableConn
		}
		return c.wrap(req.ctx, err)
	}
	return nil
}

// readResponse reads the answer to the request just sent on conn, its body into buf (at most
// limit+1 bytes); keep says whether the connection can carry another request.
func (c *h1Client) readResponse(conn *h1Conn, req *h1Request, buf io.ReaderFrom, limit int64, h http.Header, vals *[]string) (status int, hdr http.Header, n int64, keep bool, err error) {
	ctx := req.ctx
	// From here until the head is parsed, at most maxHead bytes (plus one buffer of read-ahead)
	// come from the connection: a head that does not end is an error, not a growing line.
	conn.hr.limit(c.maxHead + int64(conn.br.Size()))
	defer conn.hr.unlimit()
	if _, err := conn.br.Peek(1); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return 0, nil, 0, false, errUnusableConn
		}
		return 0, nil, 0, false, c.wrap(ctx, err)
	}
	// Fast path: the whole head is buffered and plain (see parseHead).
	if head, ok := bufferedHead(conn.br); ok {
		if h == nil {
			h = make(http.Header, 8)
		}
		status, length, closeAfter, ok := c.parseBuffered(conn, req, head, h, vals)
		if ok {
			return c.readBody(conn, req, buf, limit, status, h, length, closeAfter)
		}
	}
	forMethod := getRequest // http.ReadResponse needs the method (HEAD has no body)
	switch req.method {
	case http.MethodGet:
	case http.MethodHead:
		forMethod = headRequest
	default:
		forMethod = &http.Request{Method: req.method}
	}
	resp, err := http.ReadResponse(conn.br, forMethod)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(conn.br, forMethod) // skip interim responses
	}
	if err != nil {
		if conn.hr.over() {
			// The bound cut the head, maybe mid-line, which then reads as malformed.
			err = errHeadTooLarge
		}
		return 0, nil, 0, false, c.wrap(ctx, err)
	}
	conn.hr.unlimit()
	body, err := c.bodyFrom(conn, req, buf, io.LimitReader(resp.Body, limit+1), resp.StatusCode, resp.Header, resp.ContentLength)
	if err != nil {
		return 0, nil, 0, false, err
	}
	n, err = buf.ReadFrom(body)
	if err != nil {
		return 0, nil, 0, false, c.wrap(ctx, fmt.Errorf("read body: %w", err))
	}
	if n <= limit {
		// The whole body was read: the connection is reusable unless either side closes it.
		var one [1]byte
		if m, _ := resp.Body.Read(one[:]); m == 0 && !resp.Close && conn.br.Buffered() == 0 {
			keep = true
		}
	}
	return resp.StatusCode, resp.Header, n, keep, nil
}

// parseBuffered parses head, buffered whole in conn.br, into h (which must be empty) with vals
// as scratch space; ok is false, and h left empty, when the head needs the slow path.
func (c *h1Client) parseBuffered(conn *h1Conn, req *h1Request, head []byte, h http.Header, vals *[]string) (status int, length int64, closeAfter, ok bool) {
	var scratch []string
	if vals != nil {
		scratch = *vals
	}
	status, length, closeAfter, ok, scratch = parseHead(head, req.method == http.MethodHead, h, scratch[:0])
	if vals != nil {
		*vals = scratch
	}
	if !ok {
		clear(h) // partly filled: the slow path answers instead
		return 0, 0, false, false
	}
	conn.hr.unlimit()
	conn.br.Discard(len(head))
	return status, length, closeAfter, true
}

// readBody reads the body of a response whose head parseBuffered took (length bytes, or up
// to the connection's end when negative) into buf.
func (c *h1Client) readBody(conn *h1Conn, req *h1Request, buf io.ReaderFrom, limit int64, status int, h http.Header, length int64, closeAfter bool) (int, http.Header, int64, bool, error) {
	conn.lr = io.LimitedReader{R: conn.br, N: min(length, limit+1)}
	body, err := c.bodyFrom(conn, req, buf, &conn.lr, status, h, length)
	if err != nil {
		return 0, nil, 0, false, err
	}
	n, err := buf.ReadFrom(body)
	conn.lr.R = nil
	if err != nil {
		return 0, nil, 0, false, c.wrap(req.ctx, fmt.Errorf("read body: %w", err))
	}
	if n < min(length, limit+1) {
		return 0, nil, 0, false, c.wrap(req.ctx, fmt.Errorf("read body: %w", io.ErrUnexpectedEOF))
	}
	// Bytes past the body are not the next response's: the connection goes.
	keep := n == length && !closeAfter && conn.br.Buffered() == 0
	return status, h, n, keep, nil
}

// bodyFrom returns what the body is read from: r, or, when buf is a headSink (a streamed
// response), r with the connection's deadline moved to the executor's idle timeout before
// every read, once the sink has the head. The head's own wait stays bounded by the request's
// deadline.
func (c *h1Client) bodyFrom(conn *h1Conn, req *h1Request, buf io.ReaderFrom, r io.Reader, status int, h http.Header, length int64) (io.Reader, error) {
	s, ok := buf.(headSink)
	if !ok {
		return r, nil
	}
	if err := s.head(status, h, length); err != nil {
		return nil, err
	}
	if req.group == nil || req.timeout <= 0 {
		return r, nil // the context bounds the exchange
	}
	return &idleReader{r: r, ctx: req.ctx, timeout: req.timeout, conn: conn}, nil
}

// bufferedHead returns the buffered bytes up to and including the blank line (CRLF) that
// ends the header section, when all of it is buffered. It walks the lines (one IndexByte
// each) rather than searching for CRLF CRLF, which scanned from every CR in the head; a head
// with bare LFs is returned all the same and refused by parseHead.
func bufferedHead(br *bufio.Reader) ([]byte, bool) {
	b, _ := br.Peek(br.Buffered())
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return nil, false
		}
		if i == 1 && b[off] == '\r' {
			return b[:off+2], true
		}
		off += i + 1
	}
}

// errHeadTooLarge is an executor's response head over the bound (Options.ResponseHeaderLimit).
var errHeadTooLarge = errors.New("mimic: executor response head over the limit")

// headReader is what an h1 connection's bufio.Reader reads from: the connection, bounded to a
// number of bytes while a response head is awaited (see limit) and unbounded otherwise.
type headReader struct {
	nc      net.Conn
	left    int64
	limited bool
}

func (h *headReader) limit(n int64) { h.left, h.limited = n, true }
func (h *headReader) unlimit()      { h.limited = false }
func (h *headReader) over() bool    { return h.limited && h.left <= 0 }

func (h *headReader) Read(p []byte) (int, error) {
	if !h.limited {
		return h.nc.Read(p)
	}
	if h.left <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.nc.Read(p)
	h.left -= int64(n)
	return n, err
}

func (c *h1Client) wrap(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}
