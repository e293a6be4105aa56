// Package eve is the Suricata EVE JSON sensor (ID "sensor.eve"): it tails an EVE log file,
// following rotation and truncation, or reads a unix stream socket that Suricata's
// `filetype: unix_stream` output connects to, and turns alert and anomaly records into
// sensor events. Other event types (flow, http, dns, stats, ...) are counted and skipped.
// A malformed, partial or oversized line is counted and skipped; nothing a log holds stops
// the sensor.
//
// It imports sensor, config, atomicfile and github.com/fsnotify/fsnotify; it must not import engine.
package eve

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/proteus-defense/proteus/sensor"
)

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("eve: malformed record")

// ErrSkipped is returned by Parse for a well-formed record of a type the sensor ignores.
var ErrSkipped = errors.New("eve: event type not used")

// record is the part of an EVE record the sensor reads.
type record struct {
	Timestamp string `json:"timestamp"`
	EventType string `json:"event_type"`
	SrcIP     string `json:"src_ip"`
	SrcPort   int    `json:"src_port"`
	DestIP    string `json:"dest_ip"`
	DestPort  int    `json:"dest_port"`
	Proto     string `json:"proto"`
	AppProto  string `json:"app_proto"`
	FlowID    uint64 `json:"flow_id"`
	Alert     *struct {
		Action      string `json:"action"`
		SignatureID int64  `json:"signature_id"`
		Rev         int    `json:"rev"`
		Signature   string `json:"signature"`
		Category    string `json:"category"`
		Severity    int    `json:"severity"`
	} `json:"alert"`
	Anomaly *struct {
		Type  string `json:"type"`
		Event string `json:"event"`
		Layer string `json:"layer"`
	} `json:"anomaly"`
}

// Suricata writes "2017-04-07T22:24:37.251547+0100"; RFC 3339 is accepted too.
var timeLayouts = []string{"2006-01-02T15:04:05.999999999-0700", time.RFC3339Nano}

// Bounds on text fields copied into an event.
const maxField = 512

// Parse turns one EVE line into an event. It returns ErrSkipped for a record type the sensor
// does not use and an error wrapping ErrMalformed for anything that is not a valid EVE
// alert or anomaly record.
func Parse(line []byte) (sensor.Event, error) {
	var r record
	if err := json.Unmarshal(line, &r); err != nil {
		return sensor.Event{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.EventType == "" {
		return sensor.Event{}, fmt.Errorf("%w: no event_type", ErrMalformed)
	}
	if r.EventType != "alert" && r.EventType != "anomaly" {
		return sensor.Event{}, ErrSkipped
	}
	var ts time.Time
	var err error
	for _, l := range timeLayouts {
		if ts, err = time.Parse(l, r.Timestamp); err == nil {
			break
		}
	}
	if err != nil {
		return sensor.Event{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, clip(r.Timestamp, 64))
	}
	e := sensor.Event{Time: ts, Sensor: "eve", Kind: r.EventType, Proto: clip(r.Proto, 16), AppProto: clip(r.AppProto, 32),
		Excerpt: sensor.Excerpt(string(line))}
	if r.SrcIP != "" {
		a, err := netip.ParseAddr(r.SrcIP)
		if err != nil {
			return sensor.Event{}, fmt.Errorf("%w: src_ip %q", ErrMalformed, clip(r.SrcIP, 64))
		}
		e.Source = a.Unmap()
	}
	if r.DestIP != "" {
		a, err := netip.ParseAddr(r.DestIP)
		if err != nil {
			return sensor.Event{}, fmt.Errorf("%w: dest_ip %q", ErrMalformed, clip(r.DestIP, 64))
		}
		e.Dest = a.Unmap()
	}
	if r.DestPort < 0 || r.DestPort > 65535 || r.SrcPort < 0 || r.SrcPort > 65535 {
		return sensor.Event{}, fmt.Errorf("%w: port out of range", ErrMalformed)
	}
	e.DestPort = uint16(r.DestPort)
	switch r.EventType {
	case "alert":
		a := r.Alert
		if a == nil || a.Signature == "" {
			return sensor.Event{}, fmt.Errorf("%w: alert record without alert.signature", ErrMalformed)
		}
		if a.Severity < 0 || a.Severity > 255 {
			return sensor.Event{}, fmt.Errorf("%w: alert.severity %d", ErrMalformed, a.Severity)
		}
		e.Signature, e.SignatureID, e.Category, e.Severity = clip(a.Signature, maxField), a.SignatureID, clip(a.Category, maxField), a.Severity
		e.Summary = fmt.Sprintf("alert %d %q (%s, severity %d) %s -> %s", a.SignatureID, e.Signature, e.Category, a.Severity,
			hostPort(e.Source, r.SrcPort), hostPort(e.Dest, r.DestPort))
		if a.Action != "" {
			e.Attrs = map[string]string{"action": clip(a.Action, 16)}
		}
	case "anomaly":
		a := r.Anomaly
		if a == nil || a.Event == "" {
			return sensor.Event{}, fmt.Errorf("%w: anomaly record without anomaly.event", ErrMalformed)
		}
		e.Signature = clip(a.Event, maxField)
		e.Category = clip(a.Type, 64)
		e.Summary = fmt.Sprintf("anomaly %s %s (%s) %s -> %s", e.Category, e.Signature, clip(a.Layer, 64),
			hostPort(e.Source, r.SrcPort), hostPort(e.Dest, r.DestPort))
	}
	return e, nil
}

func hostPort(a netip.Addr, port int) string {
	if !a.IsValid() {
		return "?"
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// clip cuts s to n bytes on a UTF-8 boundary and drops control characters, so a hostile
// log cannot forge lines in a table or a terminal.
func clip(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
