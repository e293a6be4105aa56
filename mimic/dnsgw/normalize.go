package dnsgw

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// normalized is one executor's answer as the vote sees it: the records that take part, in a
// canonical form (owner and names in the data in lower case, TTL zero, packed without
// compression), sorted, so message ID, record order, name case, TTLs, EDNS options, the
// additional section and the flags that differ between a resolver and an authoritative
// server (AA, RA, AD) play no part. What takes part: the rcode, the answer section and, when
// the answer section is empty (NXDOMAIN, NODATA, a referral), the authority section.
type normalized struct {
	msg   *dns.Msg // nil for an answer read by parseAnswer: see message
	raw   int      // parseAnswer: the datagram is arena[:raw]
	rcode int
	// the header's AA, RA and AD
	aa, ra, ad bool
	recs       []canonRR // sorted
	arena      []byte    // the datagram (parseAnswer), the records' canonical forms and forms as sent
	key        uint64
	// ttlExcess, set after the vote, says how a TTL of this answer exceeded the deciding
	// group's lowest by more than the tolerance.
	ttlExcess string
}

type canonRR struct {
	at, n         int // canonical form, TTL zero: arena[at:at+n]
	origAt, origN int // parseAnswer: the record as sent, uncompressed: arena[origAt:origAt+origN]
	owner         int // length of the owner name (the TTL follows it and type and class)
	ttl           uint32
	sec           int // 0 answer, 1 authority
	idx           int // position in its section of the message
}

// fromWire says whether parseAnswer read n: then every record has its form as sent (orig),
// from which answerWire builds the client's answer without the message.
func (n *normalized) fromWire() bool { return n.msg == nil }

// canon is r's canonical form.
func (n *normalized) canon(r canonRR) []byte { return n.arena[r.at : r.at+r.n] }

// message is the answer as a message: the one normalize was given, or the datagram
// parseAnswer read, parsed again (for what only a dissent, a retry or a truncated answer
// needs). parseAnswer takes only what miekg/dns parses (FuzzExecutorAnswer holds it to that).
func (n *normalized) message() *dns.Msg {
	if n.msg != nil {
		return n.msg
	}
	m := new(dns.Msg)
	if err := m.Unpack(n.arena[:n.raw]); err != nil {
		return new(dns.Msg)
	}
	return m
}

// copyFrom makes n a copy of src (parseAnswer's), reusing n's room.
func (n *normalized) copyFrom(src *normalized) {
	arena, recs := n.arena, n.recs
	*n = *src
	n.arena = append(arena[:0], src.arena...)
	n.recs = append(recs[:0], src.recs...)
}

// release drops what a recycled round should not keep: a large answer's room.
func (n *normalized) release() {
	arena, recs := n.arena, n.recs
	if cap(arena) > 4096 {
		arena = nil
	}
	if cap(recs) > 64 {
		recs = nil
	}
	*n = normalized{arena: arena[:0], recs: recs[:0]}
}

// votedSections returns the sections that take part for m (answer, authority; one of them nil).
func votedSections(m *dns.Msg) [2][]dns.RR {
	if len(m.Answer) > 0 {
		return [2][]dns.RR{m.Answer, nil}
	}
	return [2][]dns.RR{nil, m.Ns}
}

func normalize(seed maphash.Seed, m *dns.Msg) (*normalized, error) {
	n := &normalized{msg: m, rcode: m.Rcode, aa: m.Authoritative, ra: m.RecursionAvailable, ad: m.AuthenticatedData}
	for sec, rrs := range votedSections(m) {
		for i, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeOPT {
				return nil, fmt.Errorf("%w: OPT record outside the additional section", ErrMalformed)
			}
			w, err := canonical(rr)
			if err == nil { // a record cut short (miekg/dns keeps what it read of it) packs to what does not parse
				if back, end, uerr := dns.UnpackRR(w, 0); uerr != nil || end != len(w) {
					err = fmt.Errorf("its data does not parse once packed again: %v", uerr)
				} else if back.Header().Rdlength == 0 { // a bare header, as miekg/dns keeps a record of no data
					err = errors.New("no data")
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s record: %v", ErrMalformed, dns.TypeToString[rr.Header().Rrtype], err)
			}
			n.recs = append(n.recs, canonRR{at: len(n.arena), n: len(w), ttl: rr.Header().Ttl, sec: sec, idx: i})
			n.arena = append(n.arena, w...)
		}
	}
	n.finish(seed)
	return n, nil
}

// finish sorts n's records, drops duplicates and computes its key.
func (n *normalized) finish(seed maphash.Seed) {
	slices.SortFunc(n.recs, func(a, b canonRR) int {
		if a.sec != b.sec {
			return a.sec - b.sec
		}
		return bytes.Compare(n.canon(a), n.canon(b))
	})
	n.recs = slices.CompactFunc(n.recs, func(a, b canonRR) bool { return a.sec == b.sec && bytes.Equal(n.canon(a), n.canon(b)) })
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteByte(byte(n.rcode))
	h.WriteByte(byte(n.rcode >> 8))
	for _, r := range n.recs {
		w := n.canon(r)
		h.WriteByte(byte(r.sec))
		h.WriteByte(byte(len(w) >> 8))
		h.WriteByte(byte(len(w)))
		h.Write(w)
	}
	n.key = h.Sum64()
}

// canonical packs a copy of rr with its owner and the names in its data in lower case and
// TTL zero, uncompressed. A record with nothing to lower (its owner in lower case, no name in
// its data that canonicalCopy lowers) is packed as it is, its TTL zeroed in the bytes: the same
// bytes (FuzzExecutorAnswer holds the two to it) without copying the record.
func canonical(rr dns.RR) ([]byte, error) {
	h := rr.Header()
	if !lowersData(h.Rrtype) && strings.ToLower(h.Name) == h.Name {
		buf := make([]byte, dns.Len(rr)+1)
		off, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			return nil, err
		}
		i := 0 // past the owner (uncompressed: labels, then the root's 0)
		for i < off && buf[i] != 0 {
			i += int(buf[i]) + 1
		}
		if i += 1 + 4; i+4 > off { // type and class, then the TTL
			return nil, fmt.Errorf("dnsgw: packed %s record of %d bytes", dns.TypeToString[h.Rrtype], off)
		}
		clear(buf[i : i+4])
		return buf[:off], nil
	}
	return canonicalCopy(rr)
}

// lowersData says whether canonicalCopy lowers names in the data of records of type t.
func lowersData(t uint16) bool {
	switch t {
	case dns.TypeNS, dns.TypeCNAME, dns.TypeDNAME, dns.TypePTR, dns.TypeMX, dns.TypeSOA, dns.TypeSRV,
		dns.TypeNAPTR, dns.TypeRRSIG, dns.TypeNSEC, dns.TypeSVCB, dns.TypeHTTPS:
		return true
	}
	return false
}

// canonicalCopy is canonical by way of a copy of rr, its names lowered.
func canonicalCopy(rr dns.RR) ([]byte, error) {
	c := dns.Copy(rr)
	h := c.Header()
	h.Name, h.Ttl = strings.ToLower(h.Name), 0
	switch x := c.(type) {
	case *dns.NS:
		x.Ns = strings.ToLower(x.Ns)
	case *dns.CNAME:
		x.Target = strings.ToLower(x.Target)
	case *dns.DNAME:
		x.Target = strings.ToLower(x.Target)
	case *dns.PTR:
		x.Ptr = strings.ToLower(x.Ptr)
	case *dns.MX:
		x.Mx = strings.ToLower(x.Mx)
	case *dns.SOA:
		x.Ns, x.Mbox = strings.ToLower(x.Ns), strings.ToLower(x.Mbox)
	case *dns.SRV:
		x.Target = strings.ToLower(x.Target)
	case *dns.NAPTR:
		x.Replacement = strings.ToLower(x.Replacement)
	case *dns.RRSIG:
		x.SignerName = strings.ToLower(x.SignerName)
	case *dns.NSEC:
		x.NextDomain = strings.ToLower(x.NextDomain)
	case *dns.SVCB:
		x.Target = strings.ToLower(x.Target)
	case *dns.HTTPS:
		x.Target = strings.ToLower(x.Target)
	}
	buf := make([]byte, dns.Len(c)+1)
	off, err := dns.PackRR(c, buf, 0, nil, false)
	if err != nil {
		return nil, err
	}
	return buf[:off], nil
}

// Differs says what set a dissenting answer apart from the decision.
type Differs struct {
	Rcode   string   `json:"rcode,omitempty"`   // "NXDOMAIN, want NOERROR"
	Extra   []string `json:"extra,omitempty"`   // records only the dissenter sent (at most 8)
	Missing []string `json:"missing,omitempty"` // records of the decision it did not send (at most 8)
	TTL     string   `json:"ttl,omitempty"`     // a TTL beyond the tolerance: "604800, want at most 300+3600"
}

// String reads as text in log lines.
func (d Differs) String() string {
	var parts []string
	if d.Rcode != "" {
		parts = append(parts, "rcode "+d.Rcode)
	}
	if len(d.Extra) > 0 {
		parts = append(parts, "extra ["+strings.Join(d.Extra, "; ")+"]")
	}
	if len(d.Missing) > 0 {
		parts = append(parts, "missing ["+strings.Join(d.Missing, "; ")+"]")
	}
	if d.TTL != "" {
		parts = append(parts, "ttl "+d.TTL)
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

const maxDiffRecords = 8

func differs(a, win *normalized) Differs {
	var d Differs
	if a.rcode != win.rcode {
		d.Rcode = dns.RcodeToString[a.rcode] + ", want " + dns.RcodeToString[win.rcode]
	}
	in := func(r canonRR, from, set *normalized) bool {
		return slices.ContainsFunc(set.recs, func(o canonRR) bool { return o.sec == r.sec && bytes.Equal(set.canon(o), from.canon(r)) })
	}
	am, wm := a.message(), win.message()
	text := func(m *dns.Msg, r canonRR) string {
		if rrs := votedSections(m)[r.sec]; r.idx < len(rrs) {
			return excerpt(rrs[r.idx].String())
		}
		return "?"
	}
	for _, r := range a.recs {
		if !in(r, a, win) && len(d.Extra) < maxDiffRecords {
			d.Extra = append(d.Extra, text(am, r))
		}
	}
	for _, r := range win.recs {
		if !in(r, win, a) && len(d.Missing) < maxDiffRecords {
			d.Missing = append(d.Missing, text(wm, r))
		}
	}
	return d
}

// excerpt bounds a record's text and keeps it printable.
func excerpt(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
