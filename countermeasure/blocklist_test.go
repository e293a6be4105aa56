package countermeasure

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
)

func block(id, p string) Action {
	var t Target
	if pf, err := netip.ParsePrefix(p); err == nil {
		t = PrefixTarget(pf)
	} else {
		t = AddrTarget(netip.MustParseAddr(p))
	}
	return Action{ID: id, Actuator: BlocklistID, Kind: KindBlock, Target: t}
}

func TestBlocklist(t *testing.T) {
	ctx := context.Background()
	b := NewBlocklist()
	for _, a := range []Action{
		block("a", "203.0.113.7"),
		block("b", "198.51.100.0/24"),
		block("c", "198.51.101.0/24"), // adjacent to b: merged
		block("d", "198.51.100.128/25"),
		block("e", "2001:db8::/32"),
		block("f", "2001:db9::1"),
		block("g", "255.255.255.255/32"),
	} {
		if err := b.Apply(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.Len(); got != 5 {
		t.Errorf("%d intervals, want 5 (b, c and d merge)", got)
	}
	tests := []struct {
		addr string
		want bool
	}{
		{"203.0.113.7", true}, {"203.0.113.6", false}, {"203.0.113.8", false},
		{"198.51.100.0", true}, {"198.51.101.255", true}, {"198.51.102.0", false}, {"198.51.99.255", false},
		{"::ffff:203.0.113.7", true}, // v4-mapped v6 is the v4 address
		{"2001:db8:ffff::1", true}, {"2001:db7::1", false}, {"2001:db9::1", true}, {"2001:db9::2", false},
		{"255.255.255.255", true}, {"0.0.0.0", false}, {"::", false},
	}
	for _, tc := range tests {
		if got := b.Blocked(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Blocked(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
	if b.Blocked(netip.Addr{}) {
		t.Error("zero address blocked")
	}
	// Reverting the /24 keeps the /25 that d still wants.
	if err := b.Revert(ctx, block("b", "198.51.100.0/24")); err != nil {
		t.Fatal(err)
	}
	if b.Blocked(netip.MustParseAddr("198.51.100.1")) || !b.Blocked(netip.MustParseAddr("198.51.100.200")) {
		t.Error("revert of b did not leave exactly d's /25")
	}
	if err := b.Revert(ctx, block("zzz", "10.0.0.0/8")); err != nil {
		t.Errorf("revert of unknown action: %v", err)
	}
	if err := b.Apply(ctx, Action{ID: "p", Target: PortTarget(22)}); !errors.Is(err, ErrUnsupportedTarget) {
		t.Errorf("port target: %v", err)
	}
	if got := len(b.Prefixes()); got != 6 {
		t.Errorf("%d prefixes, want 6", got)
	}
}

// TestBlocklistMatchesNaive compares against a linear scan over random prefixes.
func TestBlocklistMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	b := NewBlocklist()
	var ps []netip.Prefix
	for i := 0; i < 500; i++ {
		p := randPrefix(r)
		ps = append(ps, p)
		if err := b.Apply(context.Background(), Action{ID: fmt.Sprint(i), Target: PrefixTarget(p)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4000; i++ {
		a := randAddr(r)
		if i%2 == 0 { // near a blocked prefix edge
			p := ps[r.IntN(len(ps))]
			a = lastAddr(p)
			if r.IntN(2) == 0 {
				a = a.Next()
			}
			if !a.IsValid() {
				continue
			}
		}
		want := false
		for _, p := range ps {
			if p.Contains(a) {
				want = true
				break
			}
		}
		if got := b.Blocked(a); got != want {
			t.Fatalf("Blocked(%s) = %v, want %v", a, got, want)
		}
	}
}

func randAddr(r *rand.Rand) netip.Addr {
	if r.IntN(2) == 0 {
		var b [4]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	for i := range b {
		b[i] = byte(r.UintN(256))
	}
	b[0] = 0x20 // keep it in a small space so prefixes hit
	return netip.AddrFrom16(b)
}

func randPrefix(r *rand.Rand) netip.Prefix {
	a := randAddr(r)
	bits := 8 + r.IntN(a.BitLen()-7)
	p, _ := a.Prefix(bits)
	return p
}

func TestBlocklistConcurrentReads(t *testing.T) {
	b := NewBlocklist()
	addr := netip.MustParseAddr("192.0.2.1")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					_ = b.Blocked(addr)
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		a := block(fmt.Sprint(i%7), "192.0.2.0/24")
		_ = b.Apply(context.Background(), a)
		_ = b.Revert(context.Background(), a)
	}
	close(stop)
	wg.Wait()
}

func TestBlockedDoesNotAllocate(t *testing.T) {
	b := newBenchBlocklist(10_000)
	addrs := []netip.Addr{netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")}
	if n := testing.AllocsPerRun(1000, func() {
		for _, a := range addrs {
			b.Blocked(a)
		}
	}); n != 0 {
		t.Fatalf("Blocked allocates %.1f times per call", n)
	}
}

func newBenchBlocklist(n int) *Blocklist {
	r := rand.New(rand.NewPCG(3, 4))
	b := NewBlocklist()
	// Fill directly and rebuild once: n Applys would rebuild n times.
	b.mu.Lock()
	for i := 0; i < n; i++ {
		b.byID[fmt.Sprint(i)] = randPrefix(r)
	}
	b.rebuildLocked()
	b.mu.Unlock()
	return b
}

// BenchmarkBlocked measures the gateway's per-request check against 10k blocked prefixes
// (half IPv4, half IPv6): go test -run '^$' -bench Blocked -benchmem ./countermeasure
func BenchmarkBlocked(b *testing.B) {
	bl := newBenchBlocklist(10_000)
	r := rand.New(rand.NewPCG(5, 6))
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = randAddr(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		bl.Blocked(addrs[i&1023])
	}
}

// BenchmarkBlocklistApply measures one Apply (a rebuild) with 10k prefixes present.
func BenchmarkBlocklistApply(b *testing.B) {
	bl := newBenchBlocklist(10_000)
	a := Action{ID: "bench", Target: PrefixTarget(netip.MustParsePrefix("192.0.2.0/24"))}
	b.ReportAllocs()
	for b.Loop() {
		_ = bl.Apply(context.Background(), a)
		_ = bl.Revert(context.Background(), a)
	}
}
