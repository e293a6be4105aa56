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

func decodeIdentity(v *jvalue) (wireIdentity, error) {
	var x wireIdentity
	for i := range v.members {
		m := &v.members[i]
		var dst *string
		switch m.key {
		case "type":
			dst = &x.Type
		case "spec_version":
			dst = &x.SpecVersion
		case "id":
			dst = &x.ID
		case "created_by_ref":
			dst = &x.CreatedByRef
		case "created":
			dst = &x.Created
		case "modified":
			dst = &x.Modified
		case "name":
			dst = &x.Name
		case "description":
			dst = &x.Description
		case "identity_class":
			dst = &x.IdentityClass
		default:
			return x, unknownField(m.key)
		}
		if err := jstring(dst, m.key, &m.val); err != nil {
			return x, err
		}
	}
	return x, nil
}

func decodeExtensionDefinition(v *jvalue) (wireExtensionDefinition, error) {
	var x wireExtensionDefinition
	for i := range v.members {
		m := &v.members[i]
		var dst *string
		switch m.key {
		case "type":
			dst = &x.Type
		case "spec_version":
			dst = &x.SpecVersion
		case "id":
			dst = &x.ID
		case "created_by_ref":
			dst = &x.CreatedByRef
		case "created":
			dst = &x.Created
		case "modified":
			dst = &x.Modified
		case "name":
			dst = &x.Name
		case "description":
			dst = &x.Description
		case "schema":
			dst = &x.Schema
		case "version":
			dst = &x.Version
		case "extension_types":
			if err := jstrings(&x.ExtensionTypes, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		default:
			return x, unknownField(m.key)
		}
		if err := jstring(dst, m.key, &m.val); err != nil {
			return x, err
		}
	}
	return x, nil
}

func decodeIndicator(v *jvalue) (wireIndicator, error) {
	var x wireIndicator
	for i := range v.members {
		m := &v.members[i]
		var dst *string
		switch m.key {
		case "type":
			dst = &x.Type
		case "spec_version":
			dst = &x.SpecVersion
		case "id":
			dst = &x.ID
		case "created_by_ref":
			dst = &x.CreatedByRef
		case "created":
			dst = &x.Created
		case "modified":
			dst = &x.Modified
		case "name":
			dst = &x.Name
		case "description":
			dst = &x.Description
		case "pattern":
			dst = &x.Pattern
		case "pattern_type":
			dst = &x.PatternType
		case "pattern_version":
			dst = &x.PatternVersion
		case "valid_from":
			dst = &x.ValidFrom
		case "valid_until":
			dst = &x.ValidUntil
		case "revoked":
			if err := jbool(&x.Revoked, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		case "indicator_types":
			if err := jstrings(&x.IndicatorTypes, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		case "confidence":
			var c int
			if err := jint(&c, m.key, &m.val); err != nil {
				return x, err
			}
			x.Confidence = &c
			continue
		default:
			return x, unknownField(m.key)
		}
		if err := jstring(dst, m.key, &m.val); err != nil {
			return x, err
		}
	}
	return x, nil
}

func decodeSighting(v *jvalue) (wireSighting, error) {
	var x wireSighting
	for i := range v.members {
		m := &v.members[i]
		var dst *string
		switch m.key {
		case "type":
			dst = &x.Type
		case "spec_version":
			dst = &x.SpecVersion
		case "id":
			dst = &x.ID
		case "created_by_ref":
			dst = &x.CreatedByRef
		case "created":
			dst = &x.Created
		case "modified":
			dst = &x.Modified
		case "description":
			dst = &x.Description
		case "first_seen":
			dst = &x.FirstSeen
		case "last_seen":
			dst = &x.LastSeen
		case "sighting_of_ref":
			dst = &x.SightingOfRef
		case "count":
			if err := jint(&x.Count, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		case "confidence":
			var c int
			if err := jint(&c, m.key, &m.val); err != nil {
				return x, err
			}
			x.Confidence = &c
			continue
		case "observed_data_refs":
			if err := jstrings(&x.ObservedDataRefs, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		case "where_sighted_refs":
			if err := jstrings(&x.WhereSightedRefs, m.key, &m.val); err != nil {
				return x, err
			}
			continue
		case "extensions":
			if err := wantObject(&m.val, m.key); err != nil {
				return x, err
			}
			x.Extensions = make(map[string]wireExposure, len(m.val.members))
			for j := range m.val.members {
				e := &m.val.members[j]
				ext, err := decodeExposure(&e.val)
				if err != nil {
					return x, err
				}
				x.Extensions[e.key] = ext
			}
			continue
		default:
			return x, unknownField(m.key)
		}
		if err := jstring(dst, m.key, &m.val); err != nil {
			return x, err
		}
	}
	return x, nil
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
