package mimic

import "time"

// lazyDeadline is a connection deadline that is only moved when it must be. Moving a
// deadline is a runtime timer update (about 3 % of the gateway's CPU when every request moved
// three or four of them); on a busy keep-alive connection the deadline asked for moves forward
// by a few microseconds per request. So a deadline is set a little later than asked (by the
// slack below) and kept while it is still no earlier than the one asked for and no more than
// the slack later: a timeout fires between d and d plus the slack, at most d/16 and 100 ms.
type lazyDeadline struct {
	at time.Time // the deadline in force; zero: none, or unknown
}

const maxDeadlineSlack = 100 * time.Millisecond

// next returns the deadline to set for want, a timeout of d after some recent instant, and
// false when the one in force already serves.
func (l *lazyDeadline) next(want time.Time, d time.Duration) (time.Time, bool) {
	slack := min(d/16, maxDeadlineSlack)
	if !l.at.IsZero() && !l.at.Before(want) && l.at.Sub(want) <= slack {
		return time.Time{}, false
	}
	l.at = want.Add(slack)
	return l.at, true
}

// forget records that the deadline was changed behind the lazyDeadline's back.
func (l *lazyDeadline) forget() { l.at = time.Time{} }
