package countermeasure

import (
	"context"
	"time"
)

// Journal persistence with group commit.
//
// An action takes effect when its actuator applies it (the blocklist swaps in a new set,
// nftables commits its transaction); Apply returns, and EventApplied is published, at that
// point. The journal records what must be reverted after a restart, and is written off
// that path: every mutation bumps m.gen and kicks one writer goroutine, which snapshots the
// whole active set and writes it atomically (temp file, fsync, rename, fsync of the dir).
// Mutations that arrive while a write is in flight are coalesced into the next one, so a
// burst of N actions costs one or two fsyncs, not N.
//
// The writer writes at most once per ManagerOptions.JournalInterval (default 250 ms): the
// first change after a quiet period is written at once, changes that follow within the
// interval are written together at its end, so a sustained stream of actions costs at most
// four fsyncs a second however fast it comes.
//
// Durability: Sync waits until everything mutated before it is on disk; Close (and Run's
// return) flushes; neither waits for the interval. A crash — not a clean stop — loses at
// most the mutations made since the last completed write: those of the last interval plus
// the write in flight (about JournalInterval plus one fsync). A lost apply means the action
// is not restored at restart (an nftables element still lapses by its kernel timeout); a
// lost revert means the action is re-applied at restart until its expiry.

// writeRetry is how long the writer waits after a failed write before trying again.
const writeRetry = time.Second

// DefaultJournalInterval is the default ManagerOptions.JournalInterval: at most one
// journal write (one fsync) per 250 ms.
const DefaultJournalInterval = 250 * time.Millisecond

// saveLocked records that the active set changed and lets the writer persist it. Without
// a running writer (before Start, after Close) it writes synchronously.
func (m *Manager) saveLocked() {
	if m.journal == nil {
		return
	}
	m.gen++
	if !m.writerOn {
		m.writeLocked()
		return
	}
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// writeLocked writes the current state synchronously (Start, and after Close).
func (m *Manager) writeLocked() {
	if m.journal == nil {
		return
	}
	gen := m.gen
	err := m.journal.save(m.sortedLocked())
	m.finishWrite(gen, err)
}

// finishWrite records the outcome of a write of generation gen; m.mu is held.
func (m *Manager) finishWrite(gen uint64, err error) {
	if gen > m.attempted {
		m.attempted = gen
	}
	m.saveErr = err
	if err == nil && gen > m.saved {
		m.saved = gen
	}
	if err != nil {
		// Keep serving: the actions are live and Run still reverts them; only a restart
		// before the next successful write would lose them.
		m.log.Error("journal save", "err", err)
	}
	close(m.flushed)
	m.flushed = make(chan struct{})
}

// writer is the one goroutine that writes the journal after Start.
func (m *Manager) writer() {
	defer close(m.writerEnd)
	var retry <-chan time.Time
	var last time.Time // end of the last write
	stop := func() {
		m.mu.Lock()
		if m.saved < m.gen {
			m.writeLocked()
		}
		m.writerOn = false
		m.mu.Unlock()
	}
	for {
		select {
		case <-m.kick:
		case <-m.flushNow:
		case <-retry:
		case <-m.stop:
			stop()
			return
		}
		retry = nil
		// At most one write per interval: changes made meanwhile join this batch. Sync
		// and Close do not wait for the interval.
		if wait := m.interval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-m.flushNow:
			case <-m.stop:
				t.Stop()
				stop()
				return
			}
			t.Stop()
		}
		m.mu.Lock()
		if m.saved >= m.gen {
			m.mu.Unlock()
			continue
		}
		gen, actions := m.gen, m.sortedLocked()
		m.mu.Unlock()
		err := m.journal.save(actions) // without the lock: Apply is not held up by the disk
		last = time.Now()
		m.mu.Lock()
		m.finishWrite(gen, err)
		again := m.saved < m.gen
		m.mu.Unlock()
		if err != nil {
			retry = time.After(writeRetry)
		} else if again {
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
	}
}

// Sync waits until every change made before it is in the journal, or the write that
// covered it failed (that error is returned), or ctx is done. Without a journal it
// returns nil at once.
func (m *Manager) Sync(ctx context.Context) error {
	m.mu.Lock()
	target := m.gen
	for {
		if m.journal == nil || m.saved >= target {
			m.mu.Unlock()
			return nil
		}
		if m.attempted >= target && m.saveErr != nil {
			err := m.saveErr
			m.mu.Unlock()
			return err
		}
		ch := m.flushed
		m.mu.Unlock()
		select {
		case m.flushNow <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
		m.mu.Lock()
	}
}

// Close flushes the journal and stops the writer; it returns the last write error, if
// any. The manager stays usable: later changes are written synchronously. Run calls Close
// when its context is done.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		started := m.writerStarted
		m.mu.Unlock()
		close(m.stop)
		if started {
			<-m.writerEnd
		}
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.journal == nil || m.saved >= m.gen {
		return nil
	}
	return m.saveErr
}
