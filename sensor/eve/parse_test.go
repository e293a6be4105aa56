package eve

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Lines in Suricata's EVE format (as suricata 6/7 writes them with the default eve-log
// settings).
const (
	alertLine   = `{"timestamp":"2024-03-05T10:12:01.123456+0000","flow_id":1187364523412345,"in_iface":"eth0","event_type":"alert","src_ip":"203.0.113.7","src_port":51234,"dest_ip":"192.0.2.10","dest_port":8080,"proto":"TCP","pkt_src":"wire/pcap","community_id":"1:abc=","alert":{"action":"allowed","gid":1,"signature_id":2010937,"rev":3,"signature":"ET SCAN Suspicious inbound to mySQL port 3306","category":"Potentially Bad Traffic","severity":2,"metadata":{"updated_at":["2019_07_26"]}},"app_proto":"http","direction":"to_server","flow":{"pkts_toserver":3,"pkts_toclient":1,"bytes_toserver":200,"bytes_toclient":66,"start":"2024-03-05T10:12:01.100000+0000"}}`
	anomalyLine = `{"timestamp":"2024-03-05T10:12:02.000001+0100","flow_id":11,"event_type":"anomaly","src_ip":"2001:db8::5","src_port":443,"dest_ip":"2001:db8::1","dest_port":55000,"proto":"TCP","app_proto":"tls","anomaly":{"app_proto":"tls","type":"applayer","event":"APPLAYER_DETECT_PROTOCOL_ONLY_ONE_DIRECTION","layer":"proto_detect"}}`
	flowLine    = `{"timestamp":"2024-03-05T10:12:03.000000+0000","flow_id":12,"event_type":"flow","src_ip":"198.51.100.1","src_port":1,"dest_ip":"192.0.2.10","dest_port":80,"proto":"TCP","flow":{"pkts_toserver":1,"pkts_toclient":0,"state":"new","reason":"timeout","alerted":false}}`
	statsLine   = `{"timestamp":"2024-03-05T10:12:04.000000+0000","event_type":"stats","stats":{"uptime":8,"capture":{"kernel_packets":10}}}`
)

func TestParse(t *testing.T) {
	e, err := Parse([]byte(alertLine))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 3, 5, 10, 12, 1, 123456000, time.UTC)
	if !e.Time.Equal(want) || e.Sensor != "eve" || e.Kind != "alert" || e.Source != netip.MustParseAddr("203.0.113.7") ||
		e.Dest != netip.MustParseAddr("192.0.2.10") || e.DestPort != 8080 || e.SignatureID != 2010937 ||
		e.Signature != "ET SCAN Suspicious inbound to mySQL port 3306" || e.Category != "Potentially Bad Traffic" ||
		e.Severity != 2 || e.AppProto != "http" || e.Proto != "TCP" || e.Excerpt != alertLine || e.Attrs["action"] != "allowed" {
		t.Fatalf("alert: %+v", e)
	}
	a, err := Parse([]byte(anomalyLine))
	if err != nil {
		t.Fatal(err)
	}
	if a.Kind != "anomaly" || a.Signature != "APPLAYER_DETECT_PROTOCOL_ONLY_ONE_DIRECTION" || a.Category != "applayer" ||
		a.Source != netip.MustParseAddr("2001:db8::5") || !a.Time.Equal(time.Date(2024, 3, 5, 9, 12, 2, 1000, time.UTC)) {
		t.Fatalf("anomaly: %+v", a)
	}
	for _, l := range []string{flowLine, statsLine} {
		if _, err := Parse([]byte(l)); !errors.Is(err, ErrSkipped) {
			t.Errorf("%.40s: err %v, want ErrSkipped", l, err)
		}
	}
}

// TestParseBad runs every line of testdata/bad.jsonl: each must be refused as malformed.
func TestParseBad(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "bad.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range splitLines(data) {
		n++
		if _, err := Parse(l); !errors.Is(err, ErrMalformed) {
			t.Errorf("%q: err %v, want ErrMalformed", l, err)
		}
	}
	if n < 10 {
		t.Fatalf("only %d bad lines", n)
	}
}

func splitLines(data []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, b := range data {
		if b == '\n' {
			if i > start {
				out = append(out, data[start:i])
			}
			start = i + 1
		}
	}
	return out
}

func TestParseStripsControlCharacters(t *testing.T) {
	l := `{"timestamp":"2024-03-05T10:12:01.000000+0000","event_type":"alert","src_ip":"203.0.113.7","alert":{"signature":"evil\u001b[2J\nforged line","category":"x\ty","severity":1}}`
	e, err := Parse([]byte(l))
	if err != nil {
		t.Fatal(err)
	}
	if e.Signature != "evil[2Jforged line" || e.Category != "xy" {
		t.Fatalf("signature %q category %q", e.Signature, e.Category)
	}
}

func FuzzParse(f *testing.F) {
	for _, l := range []string{alertLine, anomalyLine, flowLine, statsLine, `{}`, `{"event_type":"alert"}`} {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := Parse(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSkipped) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if e.Kind != "alert" && e.Kind != "anomaly" {
			t.Fatalf("kind %q", e.Kind)
		}
		if len(e.Excerpt) > 2048 || len(e.Signature) > maxField || e.Summary == "" {
			t.Fatalf("unbounded event %+v", e)
		}
	})
}
