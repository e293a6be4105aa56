// Package strictjson decodes the JSON files and messages Proteus writes itself (journal,
// certificates, learned noise) without leniency: a field the target type does not have is an
// error, and so is anything after the one JSON value. It imports only the standard library.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// ErrTrailingData is returned when data holds more than one JSON value.
var ErrTrailingData = errors.New("data after the JSON value")

// Unmarshal decodes the single JSON value in data into v, refusing unknown fields.
func Unmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	return nil
}
