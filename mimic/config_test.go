package mimic

import (
	"strings"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
)

func TestFromConfig(t *testing.T) {
	gw := `gateway:
  k: 5
  allow_weak_vote: true
  scheduler: max-diversity
  routes:
    - prefix: /api
      methods: [POST]
      policy: vote-all
  timeouts: {upstream: 2s, read_header: 1s}
  ignore: {headers: [X-Trace], json_pointers: [/ts]}
  noise_learning: {enabled: false}
  rebuild: {threshold: 0}
`
	// The embedded defaults (which need a pool) with the gateway section replaced.
	def := string(config.DefaultYAML())
	i := strings.Index(def, "gateway:\n")
	j := i + strings.Index(def[i:], "\npool:") + 1
	c, err := config.Parse("t.yaml", []byte(def[:i]+gw+def[j:]))
	if err != nil {
		t.Fatal(err)
	}
	o, s := FromConfig(c.Gateway)
	if o.K != 5 || o.Scheduler != SchedMaxDiversity || o.UpstreamTimeout != 2*time.Second ||
		o.Learn || o.RebuildThreshold != 0 || len(o.Routes) != 1 || o.Routes[0].Policy != PolicyVoteAll ||
		o.IgnorePointers[0] != "/ts" || o.FailStatus != 502 {
		t.Fatalf("options %+v", o)
	}
	if s.ReadHeaderTimeout != time.Second || s.MaxHeaderBytes != 16<<10 {
		t.Fatalf("server options %+v", s)
	}
	o.Backends = Static{{ID: "a", URL: "http://127.0.0.1:1"}}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	d, _ := FromConfig(config.Default().Gateway)
	if !d.Learn || d.RebuildThreshold != 5 || d.K != 3 {
		t.Fatalf("defaults %+v", d)
	}
}
