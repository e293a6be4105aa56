package mimic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// A single route's answer is not voted on, so it need not be held whole: the executor's head
// goes to the client as soon as it is read and the body is copied on as it arrives, whatever
// its size (ResponseLimit bounds voted responses only). A streamed body is bounded by the
// executor's idle time (UpstreamTimeout between two reads), not by a total.

// headSink is a response body sink that also takes the head before the body: the h1 client
// and fetch hand it over first.
type headSink interface {
	io.ReaderFrom
	head(status int, h http.Header, length int64) error
}

// errClientWrite marks a streamed response that failed on the client's side, which is not
// the executor's fault.
var errClientWrite = errors.New("mimic: writing to the client failed")

// errUnaskedSwitch is a 101 answer to a request that did not ask to switch protocols (upgrades
// are tunnelled apart, see tunnel.go).
var errUnaskedSwitch = errors.New("mimic: executor switched protocols unasked")

// streamSink forwards one executor response to the client. length is the body's length, -1
// when the executor did not say (the client then gets it chunked).
type streamSink struct {
	w       http.ResponseWriter
	method  string
	jitter  time.Duration
	started bool  // the head went to the client: an error now can only abort the connection
	length  int64 // of the body being copied, -1: unknown
	// writeTimeout is net/http's WriteTimeout, which a streamed body moves forward before
	// every write (the fast path's writer does that itself): a download that keeps moving is
	// not cut off, a client that stops reading still is.
	writeTimeout time.Duration
}

func (s *streamSink) reset(w http.ResponseWriter, r *http.Request, jitter time.Duration) {
	*s = streamSink{w: w, method: r.Method, jitter: jitter}
	if _, fast := w.(*fastWriter); !fast {
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
			s.writeTimeout = srv.WriteTimeout
		}
	}
}

func (s *streamSink) head(status int, h http.Header, length int64) error {
	if status == http.StatusSwitchingProtocols {
		return errUnaskedSwitch
	}
	if s.jitter > 0 {
		time.Sleep(rand.N(s.jitter))
	}
	s.started, s.length = true, length
	writeHead(s.w, s.method, status, h, length)
	return nil
}

var streamBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom copies the body to the client. A body read in one go (the common small response)
// is left to the writer to send with the head in one write; otherwise every piece is flushed
// as it arrives, so a slow executor's output (a long poll, server-sent events) is not held.
func (s *streamSink) ReadFrom(r io.Reader) (int64, error) {
	bp := streamBufs.Get().(*[]byte)
	defer streamBufs.Put(bp)
	buf := *bp
	flusher, _ := s.w.(http.Flusher)
	var rc *http.ResponseController
	if s.writeTimeout > 0 {
		rc = http.NewResponseController(s.w)
	}
	var n int64
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if rc != nil {
				rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
			}
			if _, err := s.w.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("%w: %v", errClientWrite, err)
			}
			n += int64(m)
			if flusher != nil && n != s.length {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// idleReader moves a deadline forward before every read, so a streamed body is bounded by
// the time between two reads, not by a total: the h1 connection's deadline, or for a request
// through the http.RoundTripper the timer that cancels its context.
type idleReader struct {
	r       io.Reader
	ctx     context.Context
	timeout time.Duration
	conn    *h1Conn     // or
	timer   *time.Timer // (its expiry cancels ctx)
}

func (i *idleReader) Read(p []byte) (int, error) {
	if i.conn != nil {
		if at, move := i.conn.dl.next(time.Now().Add(i.timeout), i.timeout); move {
			i.conn.nc.SetDeadline(at)
		}
	} else {
		i.timer.Reset(i.timeout)
	}
	// Moved first, then checked: a cancellation (which sets a past deadline) is never undone.
	if err := i.ctx.Err(); err != nil {
		return 0, err
	}
	return i.r.Read(p)
}
