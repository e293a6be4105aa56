package strictyaml

import (
	"fmt"
	"math"
)

// Problem is a validation finding before it has a position: the dotted field path and a message.
type Problem struct {
	Field string
	Msg   string
}

// Problems collects validation findings. Validation code appends to it without doing I/O;
// Document.Locate later turns the list into positioned errors.
type Problems []Problem

// Addf records a problem with field.
func (p *Problems) Addf(field, format string, args ...any) {
	*p = append(*p, Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Finite records a problem when v is NaN or infinite; it reports whether v is finite.
func (p *Problems) Finite(field string, v float64) bool {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		p.Addf(field, "must be a finite number, got %v", v)
		return false
	}
	return true
}

// Probability records a problem unless v is a finite number in [0,1].
func (p *Problems) Probability(field string, v float64) {
	if p.Finite(field, v) && (v < 0 || v > 1) {
		p.Addf(field, "must be a probability in [0,1], got %v", v)
	}
}

// Range records a problem unless lo <= v <= hi (and v is finite).
func (p *Problems) Range(field string, v, lo, hi float64) {
	if p.Finite(field, v) && (v < lo || v > hi) {
		p.Addf(field, "must be in [%v,%v], got %v", lo, hi, v)
	}
}

// NonNegative records a problem unless v is finite and >= 0.
func (p *Problems) NonNegative(field string, v float64) {
	if p.Finite(field, v) && v < 0 {
		p.Addf(field, "must be >= 0, got %v", v)
	}
}

// Err returns the problems as an Errors value without positions (file name only), or nil.
// Use it when there is no Document, e.g. for a value built in code.
func (p Problems) Err(file string) error {
	if len(p) == 0 {
		return nil
	}
	out := make(Errors, len(p))
	for i, q := range p {
		out[i] = &FieldError{File: file, Field: q.Field, Msg: q.Msg}
	}
	return out
}
