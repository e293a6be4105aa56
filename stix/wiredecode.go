package stix

import (
	"fmt"
	"strconv"
)

// Typed reads of the parsed tree into the wire structs (wire.go). Every object Proteus
// defines is read strictly: an unknown property is an error ("unknown field"), and so is a
// value of the wrong JSON type, including null ("cannot unmarshal").

type parsedBundle struct {
	Type    string
	ID      string
	Objects []jmember // values are the objects
}

func unknownField(k string) error { return fmt.Errorf("json: unknown field %q", k) }

func mismatch(v *jvalue, field, want string) error {
	what := v.kind.String()
	if v.kind == jNumber {
		what += " " + v.s
	}
	return fmt.Errorf("json: cannot unmarshal %s into field %s of type %s", what, field, want)
}

func wantObject(v *jvalue, what string) error {
	if v.kind != jObject {
		return mismatch(v, what, "object")
	}
	return nil
}

func jstring(dst *string, field string, v *jvalue) error {
	if v.kind != jString {
		return mismatch(v, field, "string")
	}
	*dst = v.s
	return nil
}

func jstrings(dst *[]string, field string, v *jvalue) error {
	if v.kind != jArray {
		return mismatch(v, field, "[]string")
	}
	out := make([]string, len(v.members))
	for i := range v.members {
		if err := jstring(&out[i], field, &v.members[i].val); err != nil {
			return err
		}
	}
	*dst = out
	return nil
}

func jbool(dst *bool, field string, v *jvalue) error {
	if v.kind != jBool {
		return mismatch(v, field, "bool")
	}
	*dst = v.b
	return nil
}

// jint reads an integer literal the way encoding/json does (no fraction, no exponent).
func jint(dst *int, field string, v *jvalue) error {
	if v.kind != jNumber {
		return mismatch(v, field, "int")
	}
	n, err := strconv.ParseInt(v.s, 10, 64)
	if err != nil {
		return mismatch(v, field, "int")
	}
	*dst = int(n)
	return nil
}

func juint16(dst *uint16, field string, v *jvalue) error {
	if v.kind != jNumber {
		return mismatch(v, field, "uint16")
	}
	n, err := strconv.ParseUint(v.s, 10, 16)
	if err != nil {
		return mismatch(v, field, "uint16")
	}
	*dst = uint16(n)
	return nil
}

func decodeBundle(v *jvalue) (parsedBundle, error) {
	var b parsedBundle
	if err := wantObject(v, "bundle"); err != nil {
		return b, err
	}
	for i := range v.members {
		m := &v.members[i]
		var err error
		switch m.key {
		case "type":
			err = jstring(&b.Type, m.key, &m.val)
		case "id":
			err = jstring(&b.ID, m.key, &m.val)
		case "objects":
			if m.val.kind != jArray {
				err = mismatch(&m.val, m.key, "array")
			} else {
				b.Objects = m.val.members
			}
		default:
			err = unknownField(m.key)
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// commonRefs points at the properties every object Proteus defines shares (a nil entry:
// the type has no such property, so the key is left to its own fields and, there,
// rejected as unknown).
type commonRefs struct {
	typ, specVersion, id, createdByRef, created, modified, name, description *string
}

// refs points commonRefs at c and at the object's own name and description (nil for a
// type without one).
func (c *wireCommon) refs(name, description *string) commonRefs {
	return commonRefs{&c.Type, &c.SpecVersion, &c.ID, &c.CreatedByRef, &c.Created, &c.Modified, name, description}
}

// field returns where the common property key goes, or nil if key is not one of them.
func (c *commonRefs) field(key string) *string {
	switch key {
	case "type":
		return c.typ
	case "spec_version":
		return c.specVersion
	case "id":
		return c.id
	case "created_by_ref":
		return c.createdByRef
	case "created":
		return c.created
	case "modified":
		return c.modified
	case "name":
		return c.name
	case "description":
		return c.description
	}
	return nil
}

// decodeObject reads the members of the object v in order: a common property into c, any
// other through own (which returns unknownField for a key the type does not have).
func decodeObject(v *jvalue, c commonRefs, own func(m *jmember) error) error {
	for i := range v.members {
		m := &v.members[i]
		var err error
		if dst := c.field(m.key); dst != nil {
			err = jstring(dst, m.key, &m.val)
		} else {
			err = own(m)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// jconfidence reads an optional integer into a fresh *int.
func jconfidence(dst **int, field string, v *jvalue) error {
	var c int
	if err := jint(&c, field, v); err != nil {
		return err
	}
	*dst = &c
	return nil
}

func decodeIdentity(v *jvalue) (wireIdentity, error) {
	var x wireIdentity
	err := decodeObject(v, x.refs(&x.Name, &x.Description), func(m *jmember) error {
		switch m.key {
		case "identity_class":
			return jstring(&x.IdentityClass, m.key, &m.val)
		}
		return unknownField(m.key)
	})
	return x, err
}

func decodeExtensionDefinition(v *jvalue) (wireExtensionDefinition, error) {
	var x wireExtensionDefinition
	err := decodeObject(v, x.refs(&x.Name, &x.Description), func(m *jmember) error {
		switch m.key {
		case "schema":
			return jstring(&x.Schema, m.key, &m.val)
		case "version":
			return jstring(&x.Version, m.key, &m.val)
		case "extension_types":
			return jstrings(&x.ExtensionTypes, m.key, &m.val)
		}
		return unknownField(m.key)
	})
	return x, err
}

func decodeIndicator(v *jvalue) (wireIndicator, error) {
	var x wireIndicator
	err := decodeObject(v, x.refs(&x.Name, &x.Description), func(m *jmember) error {
		switch m.key {
		case "pattern":
			return jstring(&x.Pattern, m.key, &m.val)
		case "pattern_type":
			return jstring(&x.PatternType, m.key, &m.val)
		case "pattern_version":
			return jstring(&x.PatternVersion, m.key, &m.val)
		case "valid_from":
			return jstring(&x.ValidFrom, m.key, &m.val)
		case "valid_until":
			return jstring(&x.ValidUntil, m.key, &m.val)
		case "revoked":
			return jbool(&x.Revoked, m.key, &m.val)
		case "indicator_types":
			return jstrings(&x.IndicatorTypes, m.key, &m.val)
		case "confidence":
			return jconfidence(&x.Confidence, m.key, &m.val)
		}
		return unknownField(m.key)
	})
	return x, err
}

func decodeSighting(v *jvalue) (wireSighting, error) {
	var x wireSighting
	err := decodeObject(v, x.refs(nil, &x.Description), func(m *jmember) error {
		switch m.key {
		case "first_seen":
			return jstring(&x.FirstSeen, m.key, &m.val)
		case "last_seen":
			return jstring(&x.LastSeen, m.key, &m.val)
		case "sighting_of_ref":
			return jstring(&x.SightingOfRef, m.key, &m.val)
		case "count":
			return jint(&x.Count, m.key, &m.val)
		case "confidence":
			return jconfidence(&x.Confidence, m.key, &m.val)
		case "observed_data_refs":
			return jstrings(&x.ObservedDataRefs, m.key, &m.val)
		case "where_sighted_refs":
			return jstrings(&x.WhereSightedRefs, m.key, &m.val)
		case "extensions":
			return decodeExtensions(&x.Extensions, m.key, &m.val)
		}
		return unknownField(m.key)
	})
	return x, err
}

func decodeExtensions(dst *map[string]wireExposure, field string, v *jvalue) error {
	if err := wantObject(v, field); err != nil {
		return err
	}
	exts := make(map[string]wireExposure, len(v.members))
	*dst = exts
	for j := range v.members {
		e := &v.members[j]
		ext, err := decodeExposure(&e.val)
		if err != nil {
			return err
		}
		exts[e.key] = ext
	}
	return nil
}

func decodeExposure(v *jvalue) (wireExposure, error) {
	var x wireExposure
	if err := wantObject(v, "extensions"); err != nil {
		return x, err
	}
	for i := range v.members {
		m := &v.members[i]
		var err error
		switch m.key {
		case "extension_type":
			err = jstring(&x.ExtensionType, m.key, &m.val)
		case "recommended_action":
			err = jstring(&x.Action, m.key, &m.val)
		case "operating_system":
			err = jstring(&x.OS, m.key, &m.val)
		case "software":
			if m.val.kind != jArray {
				err = mismatch(&m.val, m.key, "array")
				break
			}
			x.Software = make([]Software, len(m.val.members))
			for j := range m.val.members {
				if err = decodeSoftware(&x.Software[j], &m.val.members[j].val); err != nil {
					break
				}
			}
		case "services":
			if m.val.kind != jArray {
				err = mismatch(&m.val, m.key, "array")
				break
			}
			x.Services = make([]Service, len(m.val.members))
			for j := range m.val.members {
				if err = decodeService(&x.Services[j], &m.val.members[j].val); err != nil {
					break
				}
			}
		default:
			err = unknownField(m.key)
		}
		if err != nil {
			return x, err
		}
	}
	return x, nil
}

func decodeSoftware(x *Software, v *jvalue) error {
	if err := wantObject(v, "software"); err != nil {
		return err
	}
	for i := range v.members {
		m := &v.members[i]
		var err error
		switch m.key {
		case "name":
			err = jstring(&x.Name, "software.name", &m.val)
		case "version":
			err = jstring(&x.Version, "software.version", &m.val)
		default:
			err = unknownField(m.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeService(x *Service, v *jvalue) error {
	if err := wantObject(v, "services"); err != nil {
		return err
	}
	for i := range v.members {
		m := &v.members[i]
		var err error
		switch m.key {
		case "port":
			err = juint16(&x.Port, "services.port", &m.val)
		case "protocol":
			err = jstring(&x.Protocol, "services.protocol", &m.val)
		case "name":
			err = jstring(&x.Name, "services.name", &m.val)
		default:
			err = unknownField(m.key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
