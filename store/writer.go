package store

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// WriterOptions configure a Writer.
type WriterOptions struct {
	Queue     int           // pending decisions before Submit drops (default 1024)
	Batch     int           // most decisions per transaction (default 128)
	Retention time.Duration // decisions older than this are deleted; 0 keeps everything
	Sweep     time.Duration // how often retention runs (default 1h)
	Logger    *slog.Logger
	Now       func() time.Time
}

type job struct {
	d    Decision
	done chan error
	// appendTo, when set, makes the job an append of d.Evidence to that decision's
	// (AppendEvidence), queued behind the decision's own write.
	appendTo string
}

// Writer writes decisions to a Store in the background, batching them into transactions.
type Writer struct {
	s       *Store
	o       WriterOptions
	q       chan job
	dropped atomic.Uint64
	failed  atomic.Uint64
	written atomic.Uint64
	log     *slog.Logger

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// NewWriter starts a writer on s; Close stops it after writing what is queued.
func NewWriter(s *Store, o WriterOptions) *Writer {
	if o.Queue <= 0 {
		o.Queue = 1024
	}
	if o.Batch <= 0 {
		o.Batch = 128
	}
	if o.Sweep <= 0 {
		o.Sweep = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{s: s, o: o, q: make(chan job, o.Queue), log: o.Logger.With("component", "store"),
		stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Submit queues d without blocking. It returns a channel that receives the write's result
// once d is committed (nil) or failed, or ok == false when the queue is full or the writer
// is closed (the decision is dropped and counted).
func (w *Writer) Submit(d Decision) (done <-chan error, ok bool) {
	j := job{d: d, done: make(chan error, 1)}
	select {
	case <-w.stop:
		w.dropped.Add(1)
		return nil, false
	default:
	}
	select {
	case w.q <- j:
		return j.done, true
	default:
		w.dropped.Add(1)
		return nil, false
	}
}

// Append queues evidence for decision id, written after every decision queued before it
// (so the evidence of a decision just submitted finds its row). ok is false when the queue is
// full or the writer is closed (the evidence is dropped and counted).
func (w *Writer) Append(id string, evs ...Evidence) bool {
	select {
	case <-w.stop:
		w.dropped.Add(1)
		return false
	default:
	}
	select {
	case w.q <- job{d: Decision{Evidence: evs}, appendTo: id, done: make(chan error, 1)}:
		return true
	default:
		w.dropped.Add(1)
		return false
	}
}

// Dropped counts decisions Submit could not queue; Failed those whose write failed;
// Written those committed.
func (w *Writer) Dropped() uint64 { return w.dropped.Load() }

// Failed counts decisions whose write failed.
func (w *Writer) Failed() uint64 { return w.failed.Load() }

// Written counts committed decisions.
func (w *Writer) Written() uint64 { return w.written.Load() }

// Close writes what is queued and stops the writer.
func (w *Writer) Close() {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
}

func (w *Writer) run() {
	defer close(w.done)
	w.sweep()
	tick := time.NewTicker(w.o.Sweep)
	defer tick.Stop()
	batch := make([]job, 0, w.o.Batch)
	for {
		select {
		case j := <-w.q:
			batch = append(batch[:0], j)
		fill:
			for len(batch) < w.o.Batch {
				select {
				case j := <-w.q:
					batch = append(batch, j)
				default:
					break fill
				}
			}
			w.write(batch)
		case <-tick.C:
			w.sweep()
		case <-w.stop:
			for {
				select {
				case j := <-w.q:
					w.write([]job{j})
				default:
					return
				}
			}
		}
	}
}

func (w *Writer) write(batch []job) {
	// Appends run in queue order, after the decisions queued before them.
	for i, j := range batch {
		if j.appendTo == "" {
			continue
		}
		if i > 0 {
			w.write(batch[:i])
		}
		err := w.s.AppendEvidence(context.Background(), j.appendTo, j.d.Evidence...)
		if err != nil {
			w.failed.Add(1)
			w.log.Error("evidence not stored", "id", j.appendTo, "err", err)
		}
		j.done <- err
		if rest := batch[i+1:]; len(rest) > 0 {
			w.write(rest)
		}
		return
	}
	ds := make([]Decision, len(batch))
	for i, j := range batch {
		ds[i] = j.d
	}
	err := w.s.Put(context.Background(), ds...)
	if err != nil && len(batch) > 1 {
		// One bad decision must not lose the batch: write them one by one.
		for _, j := range batch {
			w.write([]job{j})
		}
		return
	}
	for _, j := range batch {
		if err != nil {
			w.failed.Add(1)
			w.log.Error("decision not stored", "id", j.d.ID, "err", err)
		} else {
			w.written.Add(1)
		}
		j.done <- err
	}
}

func (w *Writer) sweep() {
	if w.o.Retention <= 0 {
		return
	}
	n, err := w.s.DeleteBefore(context.Background(), w.o.Now().Add(-w.o.Retention))
	if err != nil {
		w.log.Error("retention sweep", "err", err)
		return
	}
	if n > 0 {
		w.log.Info("retention sweep", "deleted", n)
	}
}
