package demo

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the raw implementation. A request that exceeds them gets a 4xx and the
// connection is closed.
const (
	rawMaxLine    = 8 << 10 // request line and each header line
	rawMaxHeaders = 100
	rawMaxBody    = 1 << 20 // request bodies are read and discarded
	rawIdle       = 60 * time.Second
)

// rawServer is a deliberately small HTTP/1.1 server: GET and HEAD of static files,
// keep-alive, Content-Length bodies (discarded), no chunked requests, no pipelining guarantees
// beyond in-order processing.
type rawServer struct {
	root     string
	log      *slog.Logger
	closing  atomic.Bool
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	inflight sync.WaitGroup
}

func serveRaw(ctx context.Context, ln net.Listener, root string, log *slog.Logger) error {
	s := &rawServer{root: root, log: log, conns: map[net.Conn]struct{}{}}
	stop := context.AfterFunc(ctx, func() {
		s.closing.Store(true)
		_ = ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			// Wake connections blocked reading the next request; one that is answering
			// finishes its response and then sees closing.
			_ = c.SetReadDeadline(time.Now())
		}
		s.mu.Unlock()
	})
	defer stop()
	var acceptErr error
	delay := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(delay)
				delay = min(2*delay, time.Second)
				continue
			}
			acceptErr = fmt.Errorf("demo/raw: accept: %w", err)
			break
		}
		delay = 5 * time.Millisecond
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.inflight.Add(1)
		go s.handle(c)
	}
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		<-done
	}
	return acceptErr
}

func (s *rawServer) handle(c net.Conn) {
	defer s.inflight.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	br := bufio.NewReaderSize(c, rawMaxLine)
	bw := bufio.NewWriterSize(c, 16<<10)
	for !s.closing.Load() {
		_ = c.SetReadDeadline(time.Now().Add(rawIdle))
		req, status := readRawRequest(br)
		if status != 0 {
			if status > 0 {
				writeRaw(bw, status, "text/plain; charset=utf-8", []byte(http.StatusText(status)+"\n"), false, false)
				_ = bw.Flush()
			}
			return
		}
		keep := req.keepAlive && !s.closing.Load()
		switch req.method {
		case http.MethodGet, http.MethodHead:
			code, ctype, body := respond(s.root, req.path)
			writeRaw(bw, code, ctype, body, req.method == http.MethodHead, keep)
		default:
			writeRaw(bw, http.StatusMethodNotAllowed, "text/plain; charset=utf-8", []byte(methodNotAllowedBody), false, keep)
		}
		if err := bw.Flush(); err != nil || !keep {
			return
		}
	}
}

type rawRequest struct {
	method, path string
	keepAlive    bool
}

// readRawRequest parses one request. status is 0 on success, an HTTP status to answer with
// before closing, or -1 when the connection should just be closed (EOF, timeout).
func readRawRequest(br *bufio.Reader) (rawRequest, int) {
	var r rawRequest
	line, err := readRawLine(br)
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return r, http.StatusRequestURITooLong
		}
		return r, -1
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || method == "" || target == "" {
		return r, http.StatusBadRequest
	}
	switch proto {
	case "HTTP/1.1":
		r.keepAlive = true
	case "HTTP/1.0":
	default:
		return r, http.StatusHTTPVersionNotSupported
	}
	if i := strings.Index(target, "://"); i >= 0 { // absolute-form
		target = target[i+3:]
		if j := strings.IndexByte(target, '/'); j >= 0 {
			target = target[j:]
		} else {
			target = "/"
		}
	}
	if q := strings.IndexAny(target, "?#"); q >= 0 {
		target = target[:q]
	}
	if !strings.HasPrefix(target, "/") {
		return r, http.StatusBadRequest
	}
	r.method, r.path = method, target
	contentLength := int64(0)
	for n := 0; ; n++ {
		if n > rawMaxHeaders {
			return r, http.StatusRequestHeaderFieldsTooLarge
		}
		h, err := readRawLine(br)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return r, http.StatusRequestHeaderFieldsTooLarge
			}
			return r, -1
		}
		if h == "" {
			break
		}
		name, value, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return r, http.StatusBadRequest
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			v, err := strconv.ParseInt(value, 10, 64)
			if err != nil || v < 0 || (contentLength != 0 && v != contentLength) {
				return r, http.StatusBadRequest
			}
			contentLength = v
		case "transfer-encoding":
			return r, http.StatusNotImplemented
		case "connection":
			for _, tok := range strings.Split(value, ",") {
				switch strings.ToLower(strings.TrimSpace(tok)) {
				case "close":
					r.keepAlive = false
				case "keep-alive":
					r.keepAlive = true
				}
			}
		}
	}
	if contentLength > rawMaxBody {
		return r, http.StatusRequestEntityTooLarge
	}
	if contentLength > 0 {
		if _, err := io.CopyN(io.Discard, br, contentLength); err != nil {
			return r, -1
		}
	}
	return r, 0
}

// readRawLine returns one CRLF- or LF-terminated line without the terminator.
func readRawLine(br *bufio.Reader) (string, error) {
	b, err := br.ReadSlice('\n')
	if err != nil {
		return "", err
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
	return string(b), nil
}

func writeRaw(bw *bufio.Writer, status int, ctype string, body []byte, head, keep bool) {
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nServer: proteus-demo-raw\r\nContent-Type: %s\r\nContent-Length: %d\r\n", status, http.StatusText(status), ctype, len(body))
	if !keep {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if !head {
		bw.Write(body)
	}
}
