package mimic

import (
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"sync"
	"sync/atomic"
)

// A voted request reads the bodies of k executors before it can answer. Each body goes into
// a bodyBuffer: in memory up to SpoolThreshold bytes, then into an unlinked temporary file in
// SpoolDir, so a large file served by k executors to many clients at once costs the gateway
// about SpoolThreshold of memory per executor request, not the whole body. A spooled body is
// hashed as it is written (a body in memory once it is complete): either way the value is
// maphash.Bytes of the whole body, with the gateway's seed, which the ballot compares. Once a body is
// complete and equal to one already kept for the same request it is dropped at once, so one
// copy of equal bodies is kept. Spooled bodies are compared raw: normalization (canonical
// JSON, folded HTML) needs the whole body in memory. All buffered bodies share a memory
// budget (MemoryBudget) and all spooled ones a disk budget (SpoolBudget); an executor request
// that would exceed either fails with errBudget, which is the gateway's own shortage, not the
// executor's dissent, and the client gets 503 when no quorum is left without it.

// errBudget marks an executor request the gateway could not buffer.
var errBudget = errors.New("mimic: response buffer budget exhausted")

var (
	errMemBudget   = fmt.Errorf("%w: memory", errBudget)
	errSpoolBudget = fmt.Errorf("%w: spool", errBudget)
)

// budget is a bound on bytes held across all requests.
type budget struct {
	max  int64
	used atomic.Int64
	peak atomic.Int64 // the highest use seen (tests check it)
}

func (b *budget) take(n int64) bool {
	u := b.used.Add(n)
	if u > b.max {
		b.used.Add(-n)
		return false
	}
	for p := b.peak.Load(); u > p && !b.peak.CompareAndSwap(p, u); p = b.peak.Load() {
	}
	return true
}

func (b *budget) give(n int64) { b.used.Add(-n) }

// spooler is what the bodyBuffers of one gateway share.
type spooler struct {
	seed      maphash.Seed
	threshold int64 // bytes kept in memory per body
	dir       string
	mem, disk budget
	files     atomic.Int64 // spool files open
}

func newSpooler(seed maphash.Seed, threshold int64, dir string, memBudget, spoolBudget int64) *spooler {
	s := &spooler{seed: seed, threshold: threshold, dir: dir}
	s.mem.max, s.disk.max = memBudget, spoolBudget
	return s
}

// bodyBuffer holds one executor's response body (see above).
type bodyBuffer struct {
	sp    *spooler
	mem   []byte   // the body while in memory; the copy buffer once spooled
	held  int64    // bytes of the memory budget taken: cap(mem) once grown
	file  *os.File // the body, once over the threshold
	filed int64    // bytes in file, taken from the disk budget
	h     maphash.Hash
	n     int64
}

var bodyBufPool = sync.Pool{New: func() any { return new(bodyBuffer) }}

// pooledMemMax is the largest memory buffer a released bodyBuffer keeps for its next use.
const pooledMemMax = 64 << 10

func (s *spooler) get() *bodyBuffer {
	b := bodyBufPool.Get().(*bodyBuffer)
	b.sp = s
	if int64(cap(b.mem)) > s.threshold { // from a gateway with a higher threshold
		b.mem = nil
	}
	return b
}

// release returns the memory, closes (and so deletes) the spool file and recycles b.
func (b *bodyBuffer) release() {
	if b == nil {
		return
	}
	if b.file != nil {
		b.file.Close()
		b.sp.files.Add(-1)
		b.sp.disk.give(b.filed)
	}
	b.sp.mem.give(b.held)
	mem := b.mem[:0]
	if cap(mem) > pooledMemMax {
		mem = nil
	}
	*b = bodyBuffer{mem: mem}
	bodyBufPool.Put(b)
}

// ReadFrom reads the body until EOF.
func (b *bodyBuffer) ReadFrom(r io.Reader) (int64, error) {
	if c := int64(cap(b.mem)); c > b.held { // a buffer from the pool
		if !b.sp.mem.take(c - b.held) {
			return 0, errMemBudget
		}
		b.held = c
	}
	var total int64
	var probe []byte // allocated only for a body that reaches the threshold
	for {
		full := b.file == nil && len(b.mem) == cap(b.mem)
		if full && int64(cap(b.mem)) < b.sp.threshold {
			if err := b.grow(); err != nil {
				return total, err
			}
			full = false
		}
		var p []byte
		switch {
		case full: // at the threshold: only a byte more moves the body to a file
			if probe == nil {
				probe = make([]byte, 512)
			}
			p = probe
		case b.file == nil:
			p = b.mem[len(b.mem):cap(b.mem)]
		default:
			p = b.mem[:cap(b.mem)]
		}
		m, err := r.Read(p)
		if m > 0 {
			total += int64(m)
			b.n += int64(m)
			switch {
			case full:
				if werr := b.toFile(p[:m]); werr != nil {
					return total, werr
				}
			case b.file == nil:
				b.mem = b.mem[:len(b.mem)+m]
			default:
				if werr := b.spill(p[:m]); werr != nil {
					return total, werr
				}
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// grow makes more room in memory, up to the threshold.
func (b *bodyBuffer) grow() error {
	c := int64(cap(b.mem))
	want := min(max(2*c, 4<<10), b.sp.threshold)
	if want > b.held {
		if !b.sp.mem.take(want - b.held) {
			return errMemBudget
		}
		b.held = want
	}
	mem := make([]byte, len(b.mem), want)
	copy(mem, b.mem)
	b.mem = mem
	return nil
}

// toFile starts the spool file with what is in memory and then more; mem becomes the copy
// buffer.
func (b *bodyBuffer) toFile(more []byte) error {
	f, err := os.CreateTemp(b.sp.dir, "proteus-body-")
	if err != nil {
		return fmt.Errorf("%w: %v", errSpoolBudget, err)
	}
	// Unlinked at once: nothing is left behind when it is closed, or when the process dies.
	os.Remove(f.Name())
	b.file = f
	b.sp.files.Add(1)
	b.h.SetSeed(b.sp.seed)
	head := b.mem
	b.mem = b.mem[:0]
	if err := b.spill(head); err != nil {
		return err
	}
	return b.spill(more)
}

func (b *bodyBuffer) spill(p []byte) error {
	if !b.sp.disk.take(int64(len(p))) {
		return errSpoolBudget
	}
	b.filed += int64(len(p))
	b.h.Write(p)
	if _, err := b.file.Write(p); err != nil {
		return fmt.Errorf("%w: %v", errSpoolBudget, err)
	}
	return nil
}

// spooled reports whether the body is in a file rather than in memory.
func (b *bodyBuffer) spooled() bool { return b != nil && b.file != nil }

// bytes returns the body held in memory (nil once spooled).
func (b *bodyBuffer) bytes() []byte {
	if b == nil || b.file != nil {
		return nil
	}
	return b.mem
}

// sum is the body's hash with the spooler's seed, maphash.Bytes of the whole body.
func (b *bodyBuffer) sum() uint64 {
	if b.file != nil {
		return b.h.Sum64()
	}
	return maphash.Bytes(b.sp.seed, b.mem)
}

// writeTo copies the body to w.
func (b *bodyBuffer) writeTo(w io.Writer) (int64, error) {
	if b.file == nil {
		n, err := w.Write(b.mem)
		return int64(n), err
	}
	return io.Copy(w, io.NewSectionReader(b.file, 0, b.n))
}

// bodySum is the hash of r's raw body.
func (r *response) bodySum(seed maphash.Seed) uint64 {
	if r.bb != nil {
		return r.bb.sum()
	}
	return maphash.Bytes(seed, r.body)
}

// excerptScan bounds how far into two spooled bodies bodyExcerpt looks for their first
// difference: a compromised executor's dissent costs the gateway no more than that to report.
const excerptScan = 1 << 20

// bodyExcerpt returns at most n bytes of r's body around the first byte where it differs from
// ref's (see excerpt). Bodies in memory are compared directly, spooled ones piecewise from
// their files, over their first excerptScan bytes.
func bodyExcerpt(r, ref *response, n int) string {
	if !r.bb.spooled() && !ref.bb.spooled() {
		return excerpt(r.body, ref.body, n)
	}
	var off int64
	for off < excerptScan {
		a, b := bodyAt(r, off, 32<<10), bodyAt(ref, off, 32<<10)
		i := 0
		for i < len(a) && i < len(b) && a[i] == b[i] {
			i++
		}
		off += int64(i)
		if i < len(a) || i < len(b) || len(a) == 0 {
			break
		}
	}
	start := max(0, off-int64(n/4))
	return excerpt(bodyAt(r, start, n), bodyAt(ref, start, n), n)
}

// bodyAt returns up to n bytes of r's body from offset off.
func bodyAt(r *response, off int64, n int) []byte {
	if !r.bb.spooled() {
		if off >= int64(len(r.body)) {
			return nil
		}
		return r.body[off:min(int64(len(r.body)), off+int64(n))]
	}
	if off >= r.bb.n {
		return nil
	}
	p := make([]byte, min(int64(n), r.bb.n-off))
	m, _ := r.bb.file.ReadAt(p, off)
	return p[:m]
}

// dedup drops r's copy of its body when an earlier response of the ballot kept the same
// bytes: r then shares that one's buffer.
func (b *ballot) dedup(r *response) {
	if r.bb == nil || r.shared {
		return
	}
	for _, o := range b.resps {
		if o.statusOnly || o.bb == nil || o.rawSum != r.rawSum || o.bb.n != r.bb.n {
			continue
		}
		r.bb.release()
		r.bb, r.body, r.shared = o.bb, o.body, true
		return
	}
}

// overBudget reports whether an executor request of the ballot failed for want of buffer
// space (errBudget).
func (b *ballot) overBudget() bool {
	for _, r := range b.failed {
		if errors.Is(r.err, errBudget) {
			return true
		}
	}
	return false
}
