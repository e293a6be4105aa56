package stix

import (
	"fmt"
	"time"
)

// Decode parses and strictly validates one bundle Proteus reads from a peer: a sighting
// report (returned as *Sighting) or a revocation (the indicator re-issued with
// revoked: true, returned as *Revocation). It checks, in order: size, JSON shape (unknown
// properties on the objects Proteus defines are errors), spec_version "2.1", id formats,
// references between the objects, timestamps (RFC 3339 UTC; the indicator's modified
// within MaxSkew of now; nothing created in the future), the TTL (valid_until after
// valid_from, not longer than MaxTTL, not already passed), the pattern (ParsePattern) and
// the exposure extension. Every error wraps ErrInvalid.
func Decode(data []byte, now time.Time, opts DecodeOptions) (Message, error) {
	o := opts.withDefaults()
	if len(data) > o.MaxSize {
		return nil, invalidf(ErrTooLarge, "bundle is %d bytes, max %d", len(data), o.MaxSize)
	}
	root, err := parseJSON(data)
	if err != nil {
		return nil, invalidf(nil, "bundle: %s", err)
	}
	b, err := decodeBundle(&root)
	if err != nil {
		return nil, invalidf(nil, "bundle: %s", err)
	}
	if b.Type != "bundle" {
		return nil, invalidf(nil, "bundle: type %q, want bundle", b.Type)
	}
	if !checkID(b.ID, "bundle") {
		return nil, invalidf(nil, "bundle: id %q: want bundle--<uuid>", b.ID)
	}
	if len(b.Objects) == 0 || len(b.Objects) > o.MaxObjects {
		return nil, invalidf(nil, "bundle: %d objects, want 1..%d", len(b.Objects), o.MaxObjects)
	}

	d := decoder{now: now, opts: o, identities: map[string]wireIdentity{}, seen: map[string]bool{}}
	for i := range b.Objects {
		if err := d.object(i, &b.Objects[i].val); err != nil {
			return nil, err
		}
	}
	return d.finish()
}

type decoder struct {
	now        time.Time
	opts       DecodeOptions
	seen       map[string]bool
	identities map[string]wireIdentity
	extDef     *wireExtensionDefinition
	indicator  *wireIndicator
	sighting   *wireSighting
}

func (d *decoder) object(i int, raw *jvalue) error {
	if raw.kind != jObject {
		return invalidf(nil, "objects[%d]: %s, want an object", i, raw.kind)
	}
	var h wireHeader
	for _, f := range []struct {
		name string
		dst  *string
	}{{"type", &h.Type}, {"spec_version", &h.SpecVersion}, {"id", &h.ID}} {
		if v := raw.get(f.name); v != nil {
			if err := jstring(f.dst, f.name, v); err != nil {
				return invalidf(nil, "objects[%d]: %s", i, err)
			}
		}
	}
	where := fmt.Sprintf("objects[%d] (%s)", i, h.Type)
	if h.SpecVersion != "2.1" {
		return invalidf(nil, "%s: spec_version %q, want 2.1", where, h.SpecVersion)
	}
	if !checkID(h.ID, h.Type) {
		return invalidf(nil, "%s: id %q: want %s--<uuid>", where, h.ID, h.Type)
	}
	if d.seen[h.ID] {
		return invalidf(nil, "%s: duplicate id %s", where, h.ID)
	}
	d.seen[h.ID] = true
	switch h.Type {
	case "identity":
		x, err := decodeIdentity(raw)
		if err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		if x.Name == "" || len(x.Name) > maxNameLen {
			return invalidf(nil, "%s: name: want 1..%d bytes", where, maxNameLen)
		}
		if err := d.times(where, x.Created, x.Modified); err != nil {
			return err
		}
		d.identities[x.ID] = x
	case "extension-definition":
		x, err := decodeExtensionDefinition(raw)
		if err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		if x.ID != ExtensionID {
			return invalidf(ErrUnsupported, "%s: extension %s is not %s", where, x.ID, ExtensionID)
		}
		if len(x.ExtensionTypes) != 1 || x.ExtensionTypes[0] != "property-extension" {
			return invalidf(nil, "%s: extension_types %q, want [property-extension]", where, x.ExtensionTypes)
		}
		if x.Name != ExtensionName || x.Version != ExtensionVersion || x.Schema == "" {
			return invalidf(ErrUnsupported, "%s: extension %s version %s, want %s %s", where, x.Name, x.Version, ExtensionName, ExtensionVersion)
		}
		if err := d.times(where, x.Created, x.Modified); err != nil {
			return err
		}
		d.extDef = &x
	case "indicator":
		if d.indicator != nil {
			return invalidf(nil, "%s: more than one indicator", where)
		}
		x, err := decodeIndicator(raw)
		if err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		d.indicator = &x
	case "sighting":
		if d.sighting != nil {
			return invalidf(nil, "%s: more than one sighting", where)
		}
		x, err := decodeSighting(raw)
		if err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		d.sighting = &x
	case "observed-data", "course-of-action", "relationship":
		// Accepted as context and not interpreted (other properties are not checked); the
		// header and timestamps must be sound.
		var created, modified string
		for _, f := range []struct {
			name string
			dst  *string
		}{{"created", &created}, {"modified", &modified}} {
			if v := raw.get(f.name); v != nil {
				if err := jstring(f.dst, f.name, v); err != nil {
					return invalidf(nil, "%s: %s", where, err)
				}
			}
		}
		if err := d.times(where, created, modified); err != nil {
			return err
		}
	default:
		return invalidf(ErrUnsupported, "%s: object type %q", where, h.Type)
	}
	return nil
}

// times parses created and modified, checks modified >= created and that neither is in
// the future beyond the skew.
func (d *decoder) times(where, created, modified string) error {
	c, err := parseTime(where+": created", created)
	if err != nil {
		return err
	}
	m, err := parseTime(where+": modified", modified)
	if err != nil {
		return err
	}
	if m.Before(c) {
		return invalidf(nil, "%s: modified %s before created %s", where, modified, created)
	}
	if c.After(d.now.Add(d.opts.MaxSkew)) || m.After(d.now.Add(d.opts.MaxSkew)) {
		return invalidf(ErrClockSkew, "%s: created/modified in the future", where)
	}
	return nil
}

func (d *decoder) finish() (Message, error) {
	ind := d.indicator
	if ind == nil {
		return nil, invalidf(nil, "bundle: no indicator")
	}
	const where = "indicator"
	if !checkID(ind.CreatedByRef, "identity") {
		return nil, invalidf(nil, "%s: created_by_ref %q: want identity--<uuid>", where, ind.CreatedByRef)
	}
	reporter, ok := d.identities[ind.CreatedByRef]
	if !ok {
		return nil, invalidf(nil, "%s: created_by_ref %s: identity not in bundle", where, ind.CreatedByRef)
	}
	if err := d.times(where, ind.Created, ind.Modified); err != nil {
		return nil, err
	}
	created, _ := parseTime("", ind.Created)
	modified, _ := parseTime("", ind.Modified)
	if skew := d.now.Sub(modified); skew > d.opts.MaxSkew || -skew > d.opts.MaxSkew {
		return nil, invalidf(ErrClockSkew, "%s: modified %s is %s from now (max %s)", where, ind.Modified, skew.Round(time.Millisecond), d.opts.MaxSkew)
	}
	if ind.PatternType != "stix" {
		return nil, invalidf(ErrPattern, "%s: pattern_type %q, want stix", where, ind.PatternType)
	}
	if ind.PatternVersion != "" && ind.PatternVersion != "2.1" {
		return nil, invalidf(ErrPattern, "%s: pattern_version %q, want 2.1", where, ind.PatternVersion)
	}
	target, err := ParsePattern(ind.Pattern)
	if err != nil {
		return nil, err
	}
	if err := CheckTarget(target, d.opts); err != nil {
		return nil, err
	}
	from, err := parseTime(where+": valid_from", ind.ValidFrom)
	if err != nil {
		return nil, err
	}
	until, err := parseTime(where+": valid_until", ind.ValidUntil)
	if err != nil {
		return nil, err
	}
	switch {
	case !until.After(from):
		return nil, invalidf(nil, "%s: valid_until %s not after valid_from %s", where, ind.ValidUntil, ind.ValidFrom)
	case until.Sub(from) > d.opts.MaxTTL:
		return nil, invalidf(ErrTTLTooLong, "%s: ttl %s, max %s", where, until.Sub(from), d.opts.MaxTTL)
	case until.Sub(d.now) > d.opts.MaxTTL+d.opts.MaxSkew:
		return nil, invalidf(ErrTTLTooLong, "%s: valid_until %s too far in the future", where, ind.ValidUntil)
	case !until.After(d.now):
		return nil, invalidf(ErrExpired, "%s: valid_until %s has passed", where, ind.ValidUntil)
	case len(ind.Description) > maxDescLen || len(ind.Name) > 2*maxNameLen:
		return nil, invalidf(nil, "%s: name or description too long", where)
	}
	if ind.Confidence != nil && (*ind.Confidence < 0 || *ind.Confidence > 100) {
		return nil, invalidf(nil, "%s: confidence %d: want 0..100", where, *ind.Confidence)
	}

	if ind.Revoked {
		if !modified.After(created) {
			return nil, invalidf(nil, "%s: revoked indicator must have modified after created", where)
		}
		if d.sighting != nil {
			return nil, invalidf(nil, "bundle: a revocation must not carry a sighting")
		}
		return &Revocation{ID: ind.ID, ReporterID: reporter.ID, ReporterName: reporter.Name, Target: target,
			Created: created, Modified: modified, ValidFrom: from, ValidUntil: until, Reason: ind.Description}, nil
	}

	sg := d.sighting
	if sg == nil {
		return nil, invalidf(nil, "bundle: no sighting")
	}
	const sw = "sighting"
	switch {
	case sg.SightingOfRef != ind.ID:
		return nil, invalidf(nil, "%s: sighting_of_ref %q, want the indicator %s", sw, sg.SightingOfRef, ind.ID)
	case sg.CreatedByRef != reporter.ID:
		return nil, invalidf(nil, "%s: created_by_ref %q, want the indicator's creator %s", sw, sg.CreatedByRef, reporter.ID)
	case len(sg.WhereSightedRefs) != 1 || sg.WhereSightedRefs[0] != reporter.ID:
		return nil, invalidf(nil, "%s: where_sighted_refs %q, want [%s]", sw, sg.WhereSightedRefs, reporter.ID)
	case sg.Count < 1 || sg.Count > 999_999_999:
		return nil, invalidf(nil, "%s: count %d: want 1..999999999", sw, sg.Count)
	case len(sg.ObservedDataRefs) > 0:
		for _, r := range sg.ObservedDataRefs {
			if !checkID(r, "observed-data") || !d.seen[r] {
				return nil, invalidf(nil, "%s: observed_data_refs %q: not an observed-data in the bundle", sw, r)
			}
		}
	}
	if sg.Confidence != nil && (*sg.Confidence < 0 || *sg.Confidence > 100) {
		return nil, invalidf(nil, "%s: confidence %d: want 0..100", sw, *sg.Confidence)
	}
	if err := d.times(sw, sg.Created, sg.Modified); err != nil {
		return nil, err
	}
	first, err := parseTime(sw+": first_seen", sg.FirstSeen)
	if err != nil {
		return nil, err
	}
	last, err := parseTime(sw+": last_seen", sg.LastSeen)
	if err != nil {
		return nil, err
	}
	if last.Before(first) {
		return nil, invalidf(nil, "%s: last_seen %s before first_seen %s", sw, sg.LastSeen, sg.FirstSeen)
	}
	if last.After(d.now.Add(d.opts.MaxSkew)) {
		return nil, invalidf(ErrClockSkew, "%s: last_seen %s in the future", sw, sg.LastSeen)
	}
	if d.extDef == nil {
		return nil, invalidf(nil, "bundle: extension-definition %s not declared", ExtensionID)
	}
	if len(sg.Extensions) != 1 {
		return nil, invalidf(nil, "%s: extensions: want exactly %s", sw, ExtensionID)
	}
	ext, ok := sg.Extensions[ExtensionID]
	if !ok {
		return nil, invalidf(ErrUnsupported, "%s: extensions: want exactly %s", sw, ExtensionID)
	}
	if ext.ExtensionType != "property-extension" {
		return nil, invalidf(nil, "%s: extension_type %q, want property-extension", sw, ext.ExtensionType)
	}
	action := Action(ext.Action)
	if action != ActionBlock && action != ActionWatch {
		return nil, invalidf(nil, "%s: action %q, want block or watch", sw, ext.Action)
	}
	exp := Exposure{OS: ext.OS, Software: ext.Software, Services: ext.Services}
	if err := checkExposure(exp); err != nil {
		return nil, err
	}
	conf := 0
	if ind.Confidence != nil {
		conf = *ind.Confidence
	}
	return &Sighting{ID: ind.ID, SightingID: sg.ID, ReporterID: reporter.ID, ReporterName: reporter.Name,
		Target: target, Exposure: exp, Action: action, Confidence: conf, Count: sg.Count,
		Description: ind.Description, Created: created, Modified: modified, ValidFrom: from,
		ValidUntil: until, FirstSeen: first, LastSeen: last}, nil
}

// stixTimestamp reports whether v has the form the STIX schema's timestamp pattern allows
// in UTC: 2006-01-02T15:04:05Z with an optional fraction of 1 to 9 digits (month 01-12,
// day 01-31, hour 00-23, minute and second 00-59; time.Parse then checks the calendar).
func stixTimestamp(v string) bool {
	if len(v) < 20 || v[len(v)-1] != 'Z' {
		return false
	}
	digits := func(i, n int) (int, bool) {
		x := 0
		for j := i; j < i+n; j++ {
			c := v[j]
			if c < '0' || c > '9' {
				return 0, false
			}
			x = x*10 + int(c-'0')
		}
		return x, true
	}
	sep := func(i int, c byte) bool { return v[i] == c }
	_, okY := digits(0, 4)
	mo, okM := digits(5, 2)
	d, okD := digits(8, 2)
	h, okH := digits(11, 2)
	mi, okMi := digits(14, 2)
	se, okS := digits(17, 2)
	if !okY || !okM || !okD || !okH || !okMi || !okS ||
		!sep(4, '-') || !sep(7, '-') || !sep(10, 'T') || !sep(13, ':') || !sep(16, ':') ||
		mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 59 {
		return false
	}
	frac := v[19 : len(v)-1]
	if frac == "" {
		return true
	}
	if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
		return false
	}
	_, ok := digits(20, len(frac)-1)
	return ok
}

func parseTime(where, v string) (time.Time, error) {
	if !stixTimestamp(v) {
		return time.Time{}, invalidf(nil, "%s %q: want an RFC 3339 UTC timestamp like 2026-01-02T15:04:05.000Z", where, v)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, invalidf(nil, "%s %q: %s", where, v, err)
	}
	return t, nil
}

// maxDepth bounds JSON nesting; a Proteus bundle needs 6 levels.
const maxDepth = 16
