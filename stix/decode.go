package stix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
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
	if err := checkKeys(data); err != nil {
		return nil, invalidf(nil, "bundle: %s", err)
	}
	var b wireBundle
	if err := strictUnmarshal(data, &b); err != nil {
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
	for i, raw := range b.Objects {
		if err := d.object(i, raw); err != nil {
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

func (d *decoder) object(i int, raw json.RawMessage) error {
	var h wireHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return invalidf(nil, "objects[%d]: %s", i, err)
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
		var x wireIdentity
		if err := strictUnmarshal(raw, &x); err != nil {
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
		var x wireExtensionDefinition
		if err := strictUnmarshal(raw, &x); err != nil {
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
		var x wireIndicator
		if err := strictUnmarshal(raw, &x); err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		d.indicator = &x
	case "sighting":
		if d.sighting != nil {
			return invalidf(nil, "%s: more than one sighting", where)
		}
		var x wireSighting
		if err := strictUnmarshal(raw, &x); err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		d.sighting = &x
	case "observed-data", "course-of-action", "relationship":
		// Accepted as context and not interpreted; the header and timestamps must be sound.
		var x struct {
			Created  string `json:"created"`
			Modified string `json:"modified"`
		}
		if err := json.Unmarshal(raw, &x); err != nil {
			return invalidf(nil, "%s: %s", where, err)
		}
		if err := d.times(where, x.Created, x.Modified); err != nil {
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

var timeRE = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[012])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z$`)

func parseTime(where, v string) (time.Time, error) {
	if !timeRE.MatchString(v) {
		return time.Time{}, invalidf(nil, "%s %q: want an RFC 3339 UTC timestamp like 2026-01-02T15:04:05.000Z", where, v)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, invalidf(nil, "%s %q: %s", where, v, err)
	}
	return t, nil
}

// strictUnmarshal decodes one JSON value into v, refusing unknown fields and trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON value")
	}
	return nil
}

// maxDepth bounds JSON nesting; a Proteus bundle needs 6 levels.
const maxDepth = 16

// checkKeys walks the JSON tokens once and refuses what encoding/json would silently
// accept: a key repeated in one object (the last would win), a key that is not lower case
// (encoding/json matches struct fields case-insensitively; STIX names are lower case),
// and nesting deeper than maxDepth.
func checkKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if k, isStr := tok.(string); isStr && top != nil && top.object && top.key {
			if top.keys[k] {
				return fmt.Errorf("duplicate key %q", k)
			}
			for i := 0; i < len(k); i++ {
				if c := k[i]; c >= 'A' && c <= 'Z' {
					return fmt.Errorf("key %q: STIX property names are lower case", k)
				}
			}
			top.keys[k] = true
			top.key = false
			continue
		}
		if top != nil && top.object {
			top.key = true // after this value comes a key
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if len(stack) >= maxDepth {
				return fmt.Errorf("nested deeper than %d levels", maxDepth)
			}
			stack = append(stack, &frame{object: tok == json.Delim('{'), keys: map[string]bool{}, key: true})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
	}
}
