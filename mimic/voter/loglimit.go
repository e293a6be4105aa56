package voter

import (
	"sync"
	"time"
)

// logLimiter lets one log line per key (executor and dissent kind) through per interval, so an
// executor that dissents on every request does not flood the log; the next line it lets
// through says how many it left out. Metrics and bus events are never limited.
type logLimiter struct {
	interval time.Duration
	mu       sync.Mutex
	m        map[string]*logSlot
}

type logSlot struct {
	last       time.Time
	suppressed int
}

// maxLogKeys bounds the keys tracked; past it the table starts afresh.
const maxLogKeys = 4096

func newLogLimiter(interval time.Duration) *logLimiter {
	return &logLimiter{interval: interval, m: map[string]*logSlot{}}
}

// allow says whether a line for key may be logged at now, and how many were left out since
// the last one that was.
func (l *logLimiter) allow(key string, now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.m[key]
	if s == nil {
		if len(l.m) >= maxLogKeys {
			clear(l.m)
		}
		l.m[key] = &logSlot{last: now}
		return true, 0
	}
	if now.Sub(s.last) < l.interval {
		s.suppressed++
		return false, 0
	}
	suppressed, s.suppressed, s.last = s.suppressed, 0, now
	return true, suppressed
}
