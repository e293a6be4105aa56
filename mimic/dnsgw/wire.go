package dnsgw

import (
	"hash/maphash"

	"github.com/miekg/dns"

	"github.com/proteus-defense/proteus/mimic/voter"
)

type voterAnswer = voter.Answer[*normalized, uint64]

// parseAnswer is the front's reading of an executor's datagram without miekg/dns (no
// allocation once n has room): it checks that b answers the question asked (qwire: the
// question as the front packed it, name, type and class) under id with the front's cookie,
// and normalizes it into n as normalize does. It takes only the common, plain case: one
// question, every record complete and of a type it knows (A, AAAA, NS, CNAME, DNAME, PTR, MX,
// SRV, SOA, TXT; OPT in the additional section with NSID, COOKIE and padding options), no
// truncation, no extended rcode, no byte after the last record. For anything else it says
// false, and the caller reads the datagram with miekg/dns (normalize), which also gives the
// reason a bad one is refused. So it never accepts what that path would refuse, and what
// it accepts it normalizes the same (FuzzExecutorAnswer holds the two to it).
func parseAnswer(b, qwire []byte, cookie *[8]byte, id uint16, seed maphash.Seed, n *normalized) bool {
	if len(b) < 12 || uint16(b[0])<<8|uint16(b[1]) != id {
		return false
	}
	bits := uint16(b[2])<<8 | uint16(b[3])
	// QR set; opcode QUERY; TC clear
	if bits&0x8000 == 0 || bits&0x7800 != 0 || bits&0x0200 != 0 {
		return false
	}
	if b[4] != 0 || b[5] != 1 {
		return false
	}
	counts := [3]int{int(b[6])<<8 | int(b[7]), int(b[8])<<8 | int(b[9]), int(b[10])<<8 | int(b[11])}
	arena := append(n.arena[:0], b...)
	recs := n.recs[:0]
	*n = normalized{raw: len(b), rcode: int(bits & 0xF), aa: bits&0x0400 != 0, ra: bits&0x0080 != 0, ad: bits&0x0020 != 0}
	defer func() { n.arena, n.recs = arena, recs }()

	// the question: the one asked, the name in any case
	mark := len(arena)
	var ok bool
	arena, off, ok := readName(b, 12, arena)
	if !ok || off+4 > len(b) || len(qwire) != len(arena)-mark+4 {
		return false
	}
	for i, c := range arena[mark:] {
		if lower(c) != lower(qwire[i]) {
			return false
		}
	}
	if string(b[off:off+4]) != string(qwire[len(qwire)-4:]) {
		return false
	}
	arena = arena[:mark]
	off += 4

	voted := 0 // the answer section, or the authority section if the answer section is empty
	if counts[0] == 0 {
		voted = 1
	}
	opts := 0
	for sec, count := range counts {
		for idx := range count {
			start := len(arena)
			if arena, off, ok = readName(b, off, arena); !ok || off+10 > len(b) {
				return false
			}
			owner := len(arena) - start
			t := uint16(b[off])<<8 | uint16(b[off+1])
			ttl := uint32(b[off+4])<<24 | uint32(b[off+5])<<16 | uint32(b[off+6])<<8 | uint32(b[off+7])
			rdlen := int(b[off+8])<<8 | int(b[off+9])
			arena = append(arena, b[off:off+8]...)
			arena = append(arena, 0, 0) // its length, once the data is uncompressed
			off += 10
			end := off + rdlen
			if end > len(b) {
				return false
			}
			rdata := len(arena)
			if t == dns.TypeOPT {
				// in the additional section only, once; the extended rcode must be 0
				if sec != 2 || opts > 0 || b[off-6] != 0 {
					return false
				}
				opts++
				if !cookieOption(b[off:end], cookie) {
					return false
				}
				arena, off = arena[:start], end
				continue
			}
			if rdlen == 0 {
				return false // miekg/dns keeps such a record as a bare header
			}
			if arena, ok = readRdata(t, b[:end], off, arena); !ok {
				return false
			}
			off = end
			n := len(arena) - rdata
			arena[rdata-2], arena[rdata-1] = byte(n>>8), byte(n)
			if sec != voted {
				arena = arena[:start] // checked, not voted on
				continue
			}
			origN := len(arena) - start
			at := len(arena)
			arena = append(arena, arena[start:start+origN]...)
			c := arena[at:]
			lowerName(c[:owner])
			clear(c[owner+4 : owner+8])
			lowerData(t, c[owner+10:])
			recs = append(recs, canonRR{at: at, n: origN, origAt: start, origN: origN, owner: owner, ttl: ttl, sec: sec, idx: idx})
		}
	}
	if off != len(b) {
		return false
	}
	n.arena, n.recs = arena, recs
	n.finish(seed)
	arena, recs = n.arena, n.recs
	return true
}

// cookieOption checks the options of an OPT record (NSID, COOKIE and padding only; an empty
// COOKIE is none) and that the first COOKIE echoes the front's.
func cookieOption(opts []byte, cookie *[8]byte) bool {
	seen := false
	for off := 0; off < len(opts); {
		if off+4 > len(opts) {
			return false
		}
		code := uint16(opts[off])<<8 | uint16(opts[off+1])
		l := int(opts[off+2])<<8 | int(opts[off+3])
		off += 4
		if off+l > len(opts) {
			return false
		}
		switch code {
		case dns.EDNS0NSID, dns.EDNS0PADDING:
		case dns.EDNS0COOKIE:
			if !seen && l > 0 { // the first non-empty one is the one checked
				if l < 8 || string(opts[off:off+8]) != string(cookie[:]) {
					return false
				}
				seen = true
			}
		default:
			return false
		}
		off += l
	}
	return true
}

// readRdata appends the data of a record of type t at off in msg (msg ends where the data
// does, as miekg/dns reads it) to dst, its names uncompressed; false if t is not one
// parseAnswer takes or the data does not fill its length exactly.
func readRdata(t uint16, msg []byte, off int, dst []byte) ([]byte, bool) {
	end := len(msg)
	var ok bool
	switch t {
	case dns.TypeA, dns.TypeAAAA:
		want := 4
		if t == dns.TypeAAAA {
			want = 16
		}
		if end-off != want {
			return dst, false
		}
		return append(dst, msg[off:end]...), true
	case dns.TypeNS, dns.TypeCNAME, dns.TypeDNAME, dns.TypePTR:
		dst, off, ok = readName(msg, off, dst)
	case dns.TypeMX, dns.TypeSRV:
		fixed := 2
		if t == dns.TypeSRV {
			fixed = 6
		}
		if end-off <= fixed {
			return dst, false
		}
		dst = append(dst, msg[off:off+fixed]...)
		dst, off, ok = readName(msg, off+fixed, dst)
	case dns.TypeSOA:
		if dst, off, ok = readName(msg, off, dst); ok && off < end {
			dst, off, ok = readName(msg, off, dst)
		}
		if ok && end-off != 20 {
			return dst, false
		}
		if ok {
			dst, off = append(dst, msg[off:end]...), end
		}
	case dns.TypeTXT:
		for i := off; i < end; i += 1 + int(msg[i]) {
			if i+1+int(msg[i]) > end {
				return dst, false
			}
		}
		return append(dst, msg[off:end]...), true
	default:
		return dst, false
	}
	return dst, ok && off == end
}

// readName appends the name at off in msg to dst uncompressed, with the limits miekg/dns's
// UnpackDomainName keeps (at most 255 bytes in wire form, a bounded number of compression
// pointers, no reserved label types), and returns the offset after the name.
func readName(msg []byte, off int, dst []byte) ([]byte, int, bool) {
	const maxPointers = (255+1)/2 - 2
	budget, ptrs, after := 255, 0, -1
	for {
		if off >= len(msg) {
			return dst, 0, false
		}
		c := int(msg[off])
		off++
		switch c & 0xC0 {
		case 0x00:
			if c == 0 {
				dst = append(dst, 0)
				if after < 0 {
					after = off
				}
				return dst, after, true
			}
			if off+c > len(msg) {
				return dst, 0, false
			}
			if budget -= c + 1; budget <= 0 {
				return dst, 0, false
			}
			dst = append(dst, msg[off-1:off+c]...)
			off += c
		case 0xC0:
			if off >= len(msg) {
				return dst, 0, false
			}
			if after < 0 {
				after = off + 1
			}
			if ptrs++; ptrs > maxPointers {
				return dst, 0, false
			}
			off = (c^0xC0)<<8 | int(msg[off])
		default:
			return dst, 0, false
		}
	}
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// lowerName lowers the ASCII letters of a name in wire form (a label's length is at most 63,
// below 'A', so the whole of it can be lowered).
func lowerName(b []byte) {
	for i, c := range b {
		b[i] = lower(c)
	}
}

// lowerData lowers the names in the data d of a record of type t (uncompressed), as
// canonicalCopy does.
func lowerData(t uint16, d []byte) {
	switch t {
	case dns.TypeNS, dns.TypeCNAME, dns.TypeDNAME, dns.TypePTR:
		lowerName(d)
	case dns.TypeMX:
		lowerName(d[2:])
	case dns.TypeSRV:
		lowerName(d[6:])
	case dns.TypeSOA:
		lowerName(d[:len(d)-20]) // both names
	}
}

// answerWire appends to dst the client's answer to the query req (its question as the front
// packed it: qwire) from the deciding group: the bytes answer's message packs to without
// compression, built from the records as the first member sent them. It says false when it
// cannot: the first member was not read by parseAnswer, or the answer would be larger than
// limit (answer, compressed or truncated, does that).
func answerWire(dst []byte, req *dns.Msg, qwire []byte, group []voterAnswer, udpSize, limit int) ([]byte, bool) {
	win := group[0].Value
	if !win.fromWire() {
		return dst, false
	}
	opt := req.IsEdns0()
	size := 12 + len(qwire)
	for _, r := range win.recs {
		size += r.origN
	}
	if opt != nil {
		size += 11
	}
	if size > limit || len(win.recs) > 64 {
		return dst, false
	}
	// the records in the first member's order (section, position), each TTL the group's lowest
	var order [64]int
	var counts [2]int
	for i, r := range win.recs {
		j := i
		for ; j > 0 && later(win.recs[order[j-1]], r); j-- {
			order[j] = order[j-1]
		}
		order[j] = i
		counts[r.sec]++
	}
	aa, ra, ad := groupFlags(req, group)
	bits := 0x8000 | uint16(win.rcode) | flag(aa, 0x0400) | flag(req.RecursionDesired, 0x0100) | flag(ra, 0x0080) |
		flag(ad, 0x0020) | flag(req.CheckingDisabled, 0x0010)
	ar := 0
	if opt != nil {
		ar = 1
	}
	dst = append(dst, byte(req.Id>>8), byte(req.Id), byte(bits>>8), byte(bits), 0, 1,
		byte(counts[0]>>8), byte(counts[0]), byte(counts[1]>>8), byte(counts[1]), 0, byte(ar))
	dst = append(dst, qwire...)
	for _, i := range order[:len(win.recs)] {
		r := win.recs[i]
		ttl := lowestTTL(group, i)
		at := len(dst)
		dst = append(dst, win.arena[r.origAt:r.origAt+r.origN]...)
		t := dst[at+r.owner+4:]
		t[0], t[1], t[2], t[3] = byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl)
	}
	if opt != nil {
		var do byte
		if opt.Do() {
			do = 0x80
		}
		dst = append(dst, 0, 0, 41, byte(udpSize>>8), byte(udpSize), 0, 0, do, 0, 0, 0)
	}
	return dst, true
}

func flag(on bool, bit uint16) uint16 {
	if on {
		return bit
	}
	return 0
}

// later says whether record a comes after b in the message they were read from.
func later(a, b canonRR) bool {
	if a.sec != b.sec {
		return a.sec > b.sec
	}
	return a.idx > b.idx
}
