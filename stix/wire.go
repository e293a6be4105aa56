package stix

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Fixed objects every Proteus bundle declares: the Proteus project identity and the
// extension-definition of the exposure property extension it created.
const (
	ProjectIdentityID = "identity--6f1d3c2e-8a4b-4c1d-9e7f-2b5a0c3d4e51"
	ExtensionID       = "extension-definition--3b8f6e2a-1c4d-4e5f-8a9b-7c6d5e4f3a21"
	ExtensionName     = "proteus-exposure"
	ExtensionVersion  = "1.0.0"
	ExtensionSchema   = "https://github.com/proteus-defense/proteus/blob/main/docs/architecture.md#stix"
)

// fixedEpoch is created/modified of the fixed objects and of reporter identities, whose
// content depends only on their id and name.
var fixedEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

const stixTime = "2006-01-02T15:04:05.000Z"

func ts(t time.Time) string { return t.UTC().Truncate(time.Millisecond).Format(stixTime) }

// NewID returns a fresh "<typ>--<uuid v4>".
func NewID(typ string) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("stix: crypto/rand: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return typ + "--" + formatUUID(b)
}

// derivedID returns a name-based (version 5 style, SHA-1) id of type typ for name, so
// that objects derived from one indicator get stable ids.
func derivedID(typ, name string) string {
	h := sha1.Sum([]byte("proteus/" + typ + "/" + name))
	var b [16]byte
	copy(b[:], h[:16])
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return typ + "--" + formatUUID(b)
}

func formatUUID(b [16]byte) string {
	s := hex.EncodeToString(b[:])
	return s[0:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:32]
}

// checkID reports whether id is "<typ>--<uuid>" in the form the STIX schema accepts
// (version 1-5, RFC 4122 variant), in lower case.
func checkID(id, typ string) bool {
	u, ok := strings.CutPrefix(id, typ+"--")
	if !ok || len(u) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := u[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return u[14] >= '1' && u[14] <= '5' && strings.IndexByte("89ab", u[19]) >= 0
}

// Wire forms. Field order follows the STIX specification's examples.

type wireHeader struct {
	Type        string `json:"type"`
	SpecVersion string `json:"spec_version"`
	ID          string `json:"id"`
}

// wireCommon is the common properties every object but the bundle carries, in the
// specification's order. created_by_ref is left out when empty (only identities have
// none: the extension-definition, indicator and sighting always name their creator).
type wireCommon struct {
	Type         string `json:"type"`
	SpecVersion  string `json:"spec_version"`
	ID           string `json:"id"`
	CreatedByRef string `json:"created_by_ref,omitempty"`
	Created      string `json:"created"`
	Modified     string `json:"modified"`
}

type wireIdentity struct {
	wireCommon
	Name          string `json:"name"`
	Description   string `json:"description,omitempty"`
	IdentityClass string `json:"identity_class,omitempty"`
}

type wireExtensionDefinition struct {
	wireCommon
	Name           string   `json:"name"`
	Description    string   `json:"description,omitempty"`
	Schema         string   `json:"schema"`
	Version        string   `json:"version"`
	ExtensionTypes []string `json:"extension_types"`
}

type wireIndicator struct {
	wireCommon
	Revoked        bool     `json:"revoked,omitempty"`
	Name           string   `json:"name,omitempty"`
	Description    string   `json:"description,omitempty"`
	IndicatorTypes []string `json:"indicator_types,omitempty"`
	Pattern        string   `json:"pattern"`
	PatternType    string   `json:"pattern_type"`
	PatternVersion string   `json:"pattern_version,omitempty"`
	ValidFrom      string   `json:"valid_from"`
	ValidUntil     string   `json:"valid_until"`
	Confidence     *int     `json:"confidence,omitempty"`
}

type wireSighting struct {
	wireCommon
	Description      string                  `json:"description,omitempty"`
	FirstSeen        string                  `json:"first_seen"`
	LastSeen         string                  `json:"last_seen"`
	Count            int                     `json:"count"`
	SightingOfRef    string                  `json:"sighting_of_ref"`
	ObservedDataRefs []string                `json:"observed_data_refs,omitempty"`
	WhereSightedRefs []string                `json:"where_sighted_refs"`
	Confidence       *int                    `json:"confidence,omitempty"`
	Extensions       map[string]wireExposure `json:"extensions"`
}

// wireExposure is the property extension's content.
type wireExposure struct {
	ExtensionType string     `json:"extension_type"`
	Action        string     `json:"recommended_action"`
	OS            string     `json:"operating_system,omitempty"`
	Software      []Software `json:"software,omitempty"`
	Services      []Service  `json:"services,omitempty"`
}

// newCommon returns the common properties of a STIX 2.1 object, timestamps in wire form.
func newCommon(typ, id, createdByRef string, created, modified time.Time) wireCommon {
	return wireCommon{Type: typ, SpecVersion: "2.1", ID: id, CreatedByRef: createdByRef,
		Created: ts(created), Modified: ts(modified)}
}

func projectIdentity() wireIdentity {
	return wireIdentity{wireCommon: newCommon("identity", ProjectIdentityID, "", fixedEpoch, fixedEpoch), Name: "Proteus",
		Description:   "The Proteus active-defense project; creator of the proteus-exposure extension.",
		IdentityClass: "organization"}
}

func extensionDefinition() wireExtensionDefinition {
	return wireExtensionDefinition{
		wireCommon: newCommon("extension-definition", ExtensionID, ProjectIdentityID, fixedEpoch, fixedEpoch),
		Name:       ExtensionName, Schema: ExtensionSchema, Version: ExtensionVersion,
		Description:    "The reporter's exposure profile (os, software and versions, exposed services) and its recommended action (block or watch), carried on a sighting.",
		ExtensionTypes: []string{"property-extension"}}
}

func reporterIdentity(id, name string) wireIdentity {
	return wireIdentity{wireCommon: newCommon("identity", id, "", fixedEpoch, fixedEpoch),
		Name: name, IdentityClass: "system"}
}

func indicatorName(t Target) string { return "proteus sighting " + t.String() }

// Encode renders s as a STIX 2.1 bundle: the Proteus identity and extension-definition,
// the reporter's identity, the indicator, and the sighting carrying the exposure
// extension. s.ID and s.ReporterID are required; an empty SightingID is derived from
// s.ID. Timestamps are written in UTC with millisecond precision.
func Encode(s Sighting) ([]byte, error) {
	if s.SightingID == "" {
		s.SightingID = derivedID("sighting", s.ID+"/"+ts(s.modified()))
	}
	if s.Action == "" {
		s.Action = ActionBlock
	}
	if s.Count == 0 {
		s.Count = 1
	}
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("stix: encode: %w", err)
	}
	first := s.FirstSeen
	if first.IsZero() {
		first = s.validFrom()
	}
	last := s.LastSeen
	if last.IsZero() {
		last = first
	}
	conf := s.Confidence
	ind := wireIndicator{wireCommon: newCommon("indicator", s.ID, s.ReporterID, s.Created, s.modified()),
		Name:        indicatorName(s.Target),
		Description: s.Description, IndicatorTypes: []string{"malicious-activity"},
		Pattern: s.Target.Pattern(), PatternType: "stix", PatternVersion: "2.1",
		ValidFrom: ts(s.validFrom()), ValidUntil: ts(s.ValidUntil), Confidence: &conf}
	sig := wireSighting{wireCommon: newCommon("sighting", s.SightingID, s.ReporterID, s.Created, s.modified()),
		FirstSeen: ts(first), LastSeen: ts(last),
		Count: s.Count, SightingOfRef: s.ID, WhereSightedRefs: []string{s.ReporterID}, Confidence: &conf,
		Extensions: map[string]wireExposure{ExtensionID: {ExtensionType: "property-extension",
			Action: string(s.Action), OS: s.Exposure.OS, Software: s.Exposure.Software, Services: s.Exposure.Services}}}
	return marshalBundle(derivedID("bundle", s.SightingID), projectIdentity(), extensionDefinition(),
		reporterIdentity(s.ReporterID, s.ReporterName), ind, sig)
}

// EncodeRevocation renders r as a STIX 2.1 bundle: the reporter's identity and the
// indicator re-issued with revoked: true and r.Modified as its modified timestamp.
func EncodeRevocation(r Revocation) ([]byte, error) {
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("stix: encode revocation: %w", err)
	}
	ind := wireIndicator{wireCommon: newCommon("indicator", r.ID, r.ReporterID, r.Created, r.Modified),
		Revoked: true, Name: indicatorName(r.Target),
		Description: r.Reason, IndicatorTypes: []string{"malicious-activity"},
		Pattern: r.Target.Pattern(), PatternType: "stix", PatternVersion: "2.1",
		ValidFrom: ts(r.validFrom()), ValidUntil: ts(r.ValidUntil)}
	return marshalBundle(derivedID("bundle", r.ID+"/revoked/"+ts(r.Modified)),
		reporterIdentity(r.ReporterID, r.ReporterName), ind)
}

// marshalBundle renders the bundle compactly in one json.Marshal (no per-object
// RawMessage that would be re-scanned and compacted).
func marshalBundle(id string, objs ...any) ([]byte, error) {
	out, err := json.Marshal(struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Objects []any  `json:"objects"`
	}{"bundle", id, objs})
	if err != nil {
		return nil, fmt.Errorf("stix: encode: %w", err)
	}
	return out, nil
}

func (r Revocation) validFrom() time.Time {
	if r.ValidFrom.IsZero() {
		return r.Created
	}
	return r.ValidFrom
}

// Exposure limits, enforced on both sides.
const (
	maxNameLen  = 128
	maxSoftware = 32
	maxServices = 64
	maxDescLen  = 1024
)

func (s Sighting) check() error {
	switch {
	case !checkID(s.ID, "indicator"):
		return invalidf(nil, "indicator id %q: want indicator--<uuid>", s.ID)
	case !checkID(s.SightingID, "sighting"):
		return invalidf(nil, "sighting id %q: want sighting--<uuid>", s.SightingID)
	}
	if err := checkReport(s.ReporterID, s.ReporterName, s.Target); err != nil {
		return err
	}
	switch {
	case s.Action != ActionBlock && s.Action != ActionWatch:
		return invalidf(nil, "action %q: want block or watch", s.Action)
	case s.Confidence < 0 || s.Confidence > 100:
		return invalidf(nil, "confidence %d: want 0..100", s.Confidence)
	case s.Count < 1 || s.Count > 999_999_999:
		return invalidf(nil, "count %d: want 1..999999999", s.Count)
	case len(s.Description) > maxDescLen:
		return invalidf(nil, "description longer than %d bytes", maxDescLen)
	case s.Created.IsZero():
		return invalidf(nil, "created: required")
	case s.modified().Before(s.Created):
		return invalidf(nil, "modified before created")
	case !s.ValidUntil.After(s.validFrom()):
		return invalidf(nil, "valid_until must be after valid_from")
	case !s.LastSeen.IsZero() && !s.FirstSeen.IsZero() && s.LastSeen.Before(s.FirstSeen):
		return invalidf(nil, "last_seen before first_seen")
	}
	return checkExposure(s.Exposure)
}

func (r Revocation) check() error {
	if !checkID(r.ID, "indicator") {
		return invalidf(nil, "indicator id %q: want indicator--<uuid>", r.ID)
	}
	if err := checkReport(r.ReporterID, r.ReporterName, r.Target); err != nil {
		return err
	}
	switch {
	case len(r.Reason) > maxDescLen:
		return invalidf(nil, "reason longer than %d bytes", maxDescLen)
	case r.Created.IsZero():
		return invalidf(nil, "created: required")
	case !r.Modified.After(r.Created):
		return invalidf(nil, "revocation modified must be after created")
	case !r.ValidUntil.After(r.validFrom()):
		return invalidf(nil, "valid_until must be after valid_from")
	}
	return nil
}

// checkReport checks who reports (the reporter's identity id and name) and what (the
// target), as a sighting and a revocation both carry them.
func checkReport(reporterID, reporterName string, t Target) error {
	switch {
	case !checkID(reporterID, "identity"):
		return invalidf(nil, "reporter id %q: want identity--<uuid>", reporterID)
	case reporterName == "" || len(reporterName) > maxNameLen:
		return invalidf(nil, "reporter name: want 1..%d bytes", maxNameLen)
	case !t.Valid():
		return invalidf(nil, "target: want exactly one of address/CIDR and port")
	}
	return nil
}

func checkExposure(e Exposure) error {
	if len(e.OS) > maxNameLen {
		return invalidf(nil, "exposure os longer than %d bytes", maxNameLen)
	}
	if len(e.Software) > maxSoftware {
		return invalidf(nil, "exposure lists %d software, max %d", len(e.Software), maxSoftware)
	}
	for i, sw := range e.Software {
		if sw.Name == "" || len(sw.Name) > maxNameLen || len(sw.Version) > maxNameLen {
			return invalidf(nil, "exposure software[%d]: name 1..%d bytes, version up to %d", i, maxNameLen, maxNameLen)
		}
	}
	if len(e.Services) > maxServices {
		return invalidf(nil, "exposure lists %d services, max %d", len(e.Services), maxServices)
	}
	for i, sv := range e.Services {
		switch {
		case sv.Port == 0:
			return invalidf(nil, "exposure services[%d]: port must be 1..65535", i)
		case sv.Protocol != "" && sv.Protocol != "tcp" && sv.Protocol != "udp":
			return invalidf(nil, "exposure services[%d]: protocol %q, want tcp or udp", i, sv.Protocol)
		case len(sv.Name) > maxNameLen:
			return invalidf(nil, "exposure services[%d]: name longer than %d bytes", i, maxNameLen)
		}
	}
	return nil
}
