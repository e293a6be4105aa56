package decoy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/sensor"
)

// ID is the registry ID of the decoy sensor.
const ID = "sensor.decoy"

// QueueLen bounds the events waiting for the engine; more are counted as dropped.
const QueueLen = 1024

func init() {
	sensor.Register(ID, func(env sensor.Env) ([]sensor.Source, error) {
		if env.Config.Decoy == nil {
			return nil, nil
		}
		s, err := New(*env.Config.Decoy, env.Logger)
		if err != nil {
			return nil, err
		}
		s.canaries = env.Canaries
		return []sensor.Source{s}, nil
	})
}

// state is the banner set in force.
type state struct {
	signal  string
	banners banners
}

// Sensor is the set of decoys of one config section; it is a sensor.Source.
type Sensor struct {
	c     config.Decoy
	log   *slog.Logger
	sets  map[string]banners
	cur   atomic.Pointer[state]
	sem   chan struct{}
	queue chan sensor.Event
	// canaries are the decoy executor's canary tokens (pool.decoy.canaries): a connection
	// whose first bytes present one is also reported as kind canary.
	canaries []string

	mu    sync.Mutex
	addrs []net.Addr
	ready chan struct{}
	once  sync.Once

	connections, shed, dropped, unknownSignal, switches, canaryUses atomic.Uint64
}

var _ sensor.Source = (*Sensor)(nil)

// New builds the decoys of c (which passed config validation; defaults applied).
func New(c config.Decoy, log *slog.Logger) (*Sensor, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sensor{c: c, log: log.With("component", ID), sets: map[string]banners{}, sem: make(chan struct{}, max(c.MaxConns, 1)),
		queue: make(chan sensor.Event, QueueLen), ready: make(chan struct{})}
	for sig, set := range c.Banners {
		bs := banners{}
		for svc, id := range set {
			g, err := newGreeting(svc, id)
			if err != nil {
				return nil, fmt.Errorf("decoy: banners.%s: %w", sig, err)
			}
			bs[svc] = g
		}
		s.sets[sig] = bs
	}
	first, ok := s.sets[c.Signal]
	if !ok {
		return nil, fmt.Errorf("decoy: signal %q has no banner set", c.Signal)
	}
	s.cur.Store(&state{signal: c.Signal, banners: first})
	return s, nil
}

// Name is the source's name in the supervisor.
func (s *Sensor) Name() string { return "decoy" }

// Signal returns the signal whose banners the decoys present now.
func (s *Sensor) Signal() string { return s.cur.Load().signal }

// SetSignal switches the decoys to signal's banner set when asset is the one they follow
// (any, when the config names none). A signal without a banner set is counted and ignored:
// the decoys keep presenting what they did. Connections already greeted are not affected.
func (s *Sensor) SetSignal(asset, signal string) {
	if s.c.Asset != "" && asset != s.c.Asset {
		return
	}
	set, ok := s.sets[signal]
	if !ok {
		s.unknownSignal.Add(1)
		s.log.Warn("signal without a decoy banner set; banners unchanged", "asset", asset, "signal", signal, "current", s.Signal())
		return
	}
	if old := s.cur.Swap(&state{signal: signal, banners: set}); old.signal != signal {
		s.switches.Add(1)
		s.log.Info("decoy banners follow the signal", "asset", asset, "signal", signal, "previous", old.signal)
	}
}

// Counters reports what the decoys saw.
func (s *Sensor) Counters() map[string]uint64 {
	return map[string]uint64{"connections": s.connections.Load(), "shed": s.shed.Load(), "dropped": s.dropped.Load(),
		"unknown_signal": s.unknownSignal.Load(), "signal_switches": s.switches.Load(), "canaries": s.canaryUses.Load()}
}

// Ready is closed once the decoys listen for the first time.
func (s *Sensor) Ready() <-chan struct{} { return s.ready }

// Addrs are the addresses the decoys listen on (after Ready), in config order.
func (s *Sensor) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Run puts up the fake hosts (Hosts), listens on every decoy address and reports connections
// until ctx ends, then takes the fake hosts down. A port that cannot be bound, or a fake host
// that cannot be put up, is an error (the supervisor retries with backoff).
func (s *Sensor) Run(ctx context.Context, out chan<- sensor.Event) error {
	if s.c.Hosts != nil {
		down, err := upHosts(ctx, *s.c.Hosts)
		if err != nil {
			return err
		}
		defer down()
	}
	var lc net.ListenConfig
	lns := make([]net.Listener, 0, len(s.c.Listen))
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, l := range s.c.Listen {
		ln, err := lc.Listen(ctx, "tcp", l.Addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("decoy: listen %s (%s): %w", l.Addr, l.Service, err)
		}
		lns = append(lns, ln)
	}
	s.mu.Lock()
	s.addrs = s.addrs[:0]
	for _, ln := range lns {
		s.addrs = append(s.addrs, ln.Addr())
	}
	s.mu.Unlock()
	s.once.Do(func() { close(s.ready) })

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for i, ln := range lns {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- s.accept(ctx, ln, s.c.Listen[i].Service, &wg) }()
	}
	var err error
	func() {
		for {
			select {
			case ev := <-s.queue:
				if !sensor.Send(ctx, out, ev) {
					return
				}
			case err = <-errc:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	cancel()
	closeAll()
	wg.Wait()
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// accept serves one decoy listener: at most MaxConns connections are handled at once over
// all decoys; one more is closed at once and reported as shed.
func (s *Sensor) accept(ctx context.Context, ln net.Listener, service string, wg *sync.WaitGroup) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors: wait, as net/http does, rather than spin or fail.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				continue
			}
			return fmt.Errorf("decoy: accept on %s: %w", ln.Addr(), err)
		}
		backoff = 0
		at := time.Now()
		s.connections.Add(1)
		select {
		case s.sem <- struct{}{}:
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-s.sem }()
				s.serve(conn, service, at)
			}()
		default:
			s.shed.Add(1)
			conn.Close()
			s.report(conn, service, s.cur.Load().signal, nil, true, at)
		}
	}
}

// serve greets one connection, reads its first bytes (bounded in size and time), answers a
// client-first protocol once, and reports it (at, when it was accepted, is the event's time).
func (s *Sensor) serve(conn net.Conn, service string, at time.Time) {
	defer conn.Close()
	st := s.cur.Load()
	g := st.banners[service]
	_ = conn.SetDeadline(time.Now().Add(s.c.Timeout))
	if g.hello != nil {
		_, _ = conn.Write(g.hello())
	}
	buf := make([]byte, s.c.ReadBytes)
	n := 0
	for n < len(buf) {
		k, err := conn.Read(buf[n:])
		n += k
		if err != nil || complete(service, buf[:n]) {
			break
		}
	}
	if g.reply != nil && n > 0 {
		_, _ = conn.Write(g.reply(buf[:n]))
	}
	s.report(conn, service, st.signal, buf[:n], false, at)
	if c, ok := canaryIn(s.canaries, buf[:n]); ok {
		s.canaryUses.Add(1)
		s.reportCanary(conn, service, c, at)
	}
}

// canaryIn returns the first canary the first bytes b present: as sent, percent-decoded, or
// in Basic credentials of an HTTP request head.
func canaryIn(canaries []string, b []byte) (string, bool) {
	if len(canaries) == 0 || len(b) == 0 {
		return "", false
	}
	texts := []string{string(b)}
	if bytes.ContainsAny(b, "%+") {
		if u, err := url.QueryUnescape(string(b)); err == nil {
			texts = append(texts, u)
		}
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "authorization") && !strings.EqualFold(strings.TrimSpace(k), "proxy-authorization") {
			continue
		}
		if scheme, cred, ok := strings.Cut(strings.TrimSpace(v), " "); ok && strings.EqualFold(scheme, "basic") {
			if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
				texts = append(texts, string(dec))
			}
		}
	}
	for _, t := range texts {
		for _, c := range canaries {
			if strings.Contains(t, c) {
				return c, true
			}
		}
	}
	return "", false
}

// reportCanary queues the high-confidence event of a connection that presented canary c:
// kind canary, category canary, severity 1 (after the connection's own connect event).
func (s *Sensor) reportCanary(conn net.Conn, service, c string, at time.Time) {
	src := addrPort(conn.RemoteAddr())
	dst := addrPort(conn.LocalAddr())
	ev := sensor.Event{Time: at, Sensor: "decoy", Kind: "canary", Source: src.Addr(), Dest: dst.Addr(), DestPort: dst.Port(),
		Asset: s.c.Asset, Category: "canary", Severity: 1, Proto: "TCP", AppProto: service,
		Attrs:   map[string]string{"service": service, "canary": c},
		Summary: sensor.Excerpt(fmt.Sprintf("%s presented canary %q to decoy %s on %s", src, c, service, dst))}
	select {
	case s.queue <- ev:
	default:
		s.dropped.Add(1)
	}
}

// complete reports whether b holds a whole first message of the client: a line, or an HTTP
// request head.
func complete(service string, b []byte) bool {
	if service == "http" {
		return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
	}
	return bytes.IndexByte(b, '\n') >= 0
}

// report queues the connection's event without blocking; a full queue is counted. The
// event's time is when the connection was accepted (at), not when its first bytes were read,
// so the audit record says when the source first touched the decoy.
func (s *Sensor) report(conn net.Conn, service, signal string, first []byte, shed bool, at time.Time) {
	src := addrPort(conn.RemoteAddr())
	dst := addrPort(conn.LocalAddr())
	ev := sensor.Event{Time: at, Sensor: "decoy", Kind: "connect", Source: src.Addr(), Dest: dst.Addr(), DestPort: dst.Port(),
		Asset: s.c.Asset, Category: "reconnaissance", Severity: 1, Proto: "TCP", AppProto: service,
		Attrs: map[string]string{"service": service, "signal": signal, "bytes": strconv.Itoa(len(first))}}
	what := fmt.Sprintf("sent %d bytes", len(first))
	if shed {
		ev.Attrs["shed"] = "true"
		what = "closed unread: decoys at max_conns"
	}
	ev.Summary = sensor.Excerpt(fmt.Sprintf("%s touched decoy %s on %s (%s; banners of signal %s)", src, service, dst, what, signal))
	if len(first) > 0 {
		ev.Excerpt = sensor.Excerpt(strconv.QuoteToASCII(string(first)))
	}
	select {
	case s.queue <- ev:
	default:
		s.dropped.Add(1)
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}
