package enclave

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/stix"
)

// TestCollusionStudy is the collusion study of docs/benchmarks.md ("enclave: liars"). It
// runs only when PROTEUS_ENCLAVE_STUDY lists enclave sizes (e.g. "8,16,32"): real nodes on
// loopback, 30 % of them colluding admitted members (PROTEUS_ENCLAVE_COLLUDE overrides the
// share). The colluders echo every honest report before the honest members' own sensors
// confirm it (so they earn established trust, as every honest member does by reporting four
// attacks the others' sensors then see), then alternate (on-off) between lying all
// together on one clean address and behaving. Measured at every honest member: blocks on
// clean addresses, the colluders' trust, and what an honest attack leads to when one honest
// member's own sensors saw it, and when a quorum of them did.
func TestCollusionStudy(t *testing.T) {
	sizes := os.Getenv("PROTEUS_ENCLAVE_STUDY")
	if sizes == "" {
		t.Skip("set PROTEUS_ENCLAVE_STUDY=8,16,32 to run the collusion study")
	}
	share := 0.3
	if s := os.Getenv("PROTEUS_ENCLAVE_COLLUDE"); s != "" {
		var err error
		if share, err = strconv.ParseFloat(s, 64); err != nil {
			t.Fatal(err)
		}
	}
	var rows []string
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 4 {
			t.Fatalf("bad size %q", f)
		}
		rows = append(rows, studyOne(t, n, share))
	}
	t.Log("\n| members | colluders | quorum | clean addresses lied about | honest blocks on them | colluders' trust at honest members (max) | colluders established (max) | attack seen by 1: honest members deferring / blocking | attack seen by a quorum: honest members blocking |\n|---|---|---|---|---|---|---|---|---|\n" + strings.Join(rows, "\n"))
}

func studyOne(t *testing.T, size int, share float64) string {
	e := newTestEnclave(t, "study")
	cfg := e.baseConfig()
	cfg.Trust.Window = 30 * time.Second // longer than a round of the study under load
	cfg.Decision.Members = size
	cfg.Limits.Rate, cfg.Limits.Burst = 50, 200 // the study's own pace, not a flood
	nodes := make([]*testNode, size)
	for i := range nodes {
		nodes[i] = e.start(t.TempDir(), nil, cfg)
	}
	defer func() {
		for _, n := range nodes {
			n.close(t)
		}
	}()
	connectAll(t, nodes)
	c := int(math.Floor(share * float64(size)))
	liars, honest := nodes[:c], nodes[c:]
	q := Quorum(size, cfg.Decision.MaxColluding)
	ctx := context.Background()
	pub := func(n *testNode, target string) *stix.Sighting {
		s, _, err := n.Publish(ctx, PublishRequest{Target: target, Confidence: 90, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	arrived := func(s *stix.Sighting, at []*testNode) {
		for _, h := range at {
			if h.ID().String() == s.ReporterName {
				continue
			}
			eventually(t, "report arrives", func() bool { return len(h.Decisions(s.ID)) > 0 })
		}
	}
	witness := func(target string, at []*testNode) {
		tg, _ := ParseTarget(target)
		for _, h := range at {
			if _, err := h.Witness(tg, "study.sensor", time.Hour); err != nil {
				t.Fatal(err)
			}
		}
	}
	// An honest attack seen by every honest member: one reports, the colluders echo it at
	// once, then every honest member's own sensors flag it (confirming reporter and echoes).
	attack := 0
	honestAttack := func() {
		attack++
		target := fmt.Sprintf("203.0.%d.%d", 113+attack/200, attack%200+1)
		s := pub(honest[attack%len(honest)], target)
		arrived(s, nodes)
		var echoes []*stix.Sighting
		for _, l := range liars {
			echoes = append(echoes, pub(l, target))
		}
		for _, x := range echoes {
			arrived(x, honest)
		}
		witness(target, honest)
	}
	for i := 0; i < 4*len(honest); i++ { // every honest member reports four (and is established)
		honestAttack()
	}
	var clean []string
	for cycle := 0; cycle < 3; cycle++ {
		target := fmt.Sprintf("192.0.2.%d", 10+cycle)
		clean = append(clean, target)
		var lies []*stix.Sighting
		for _, l := range liars {
			lies = append(lies, pub(l, target)) // on: all together, same target
		}
		for _, s := range lies {
			arrived(s, honest)
		}
		honestAttack() // off: behave
		honestAttack()
	}
	time.Sleep(cfg.Trust.Window + time.Second) // the lies' windows close

	blocks := 0
	maxTrust, maxEst := 0.0, 0
	for _, h := range honest {
		for _, a := range h.manager.Active() {
			for _, ct := range clean {
				if a.Kind == "block" && a.Target.String() == ct {
					blocks++
				}
			}
		}
		est := 0
		for _, l := range liars {
			maxTrust = math.Max(maxTrust, h.trust.Score(l.ID().String()))
			if h.trust.Established(l.ID().String(), cfg.Trust.Established) {
				est++
			}
		}
		maxEst = max(maxEst, est)
	}

	// An honest attack seen by one honest member's own sensors, reported.
	one := "198.51.100.77"
	witness(one, honest[:1])
	s := pub(honest[0], one)
	arrived(s, honest)
	deferring, blocking := 0, 0
	for _, h := range honest[1:] {
		d := h.Decisions(s.ID)[0]
		switch d.Decision {
		case Defer:
			if vigilant(h) { // the decision is a countermeasure applied, not only a record
				deferring++
			}
		case Act:
			blocking++
		}
	}
	// The same seen by a quorum of honest members.
	many := "198.51.100.88"
	witness(many, honest[:q])
	var ss []*stix.Sighting
	for _, h := range honest[:q] {
		ss = append(ss, pub(h, many))
	}
	for _, x := range ss {
		arrived(x, honest)
	}
	blockedMany := 0
	for _, h := range honest[q:] {
		deadline := time.Now().Add(10 * time.Second)
		for !h.blocklist.Blocked(mustAddr(many)) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if h.blocklist.Blocked(mustAddr(many)) {
			blockedMany++
			continue
		}
		var last DecisionRecord
		for _, x := range ss {
			if d := h.Decisions(x.ID); len(d) > 0 {
				last = d[len(d)-1]
			}
		}
		t.Logf("size %d: %s did not block the quorum-reported attack: %+v", size, h.ID(), last)
	}
	row := fmt.Sprintf("| %d | %d (%.0f %%) | %d | %d | %d | %.3f | %d | %d / %d of %d | %d of %d (+%d that saw it) |", size, c, 100*float64(c)/float64(size), q,
		len(clean), blocks, maxTrust, maxEst, deferring, blocking, len(honest)-1, blockedMany, len(honest)-q, q)
	t.Log(row)
	if blocks > 0 {
		t.Errorf("size %d: %d honest blocks on clean addresses", size, blocks)
	}
	// The must-show's other half: an honest attack one member saw and reported leads every
	// other relevant member to act (vigilance, never a block on one word), and one a quorum
	// saw is blocked by every relevant member.
	if deferring != len(honest)-1 || blocking != 0 {
		t.Errorf("size %d: attack seen by one: %d of %d other honest members vigilant, %d blocking", size, deferring, len(honest)-1, blocking)
	}
	if blockedMany != len(honest)-q {
		t.Errorf("size %d: attack seen by a quorum: blocked by %d of %d other honest members", size, blockedMany, len(honest)-q)
	}
	return row
}
