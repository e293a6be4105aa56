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
  timeouts: {upstream: 2s, read_header: 1s, body: 3s}
  ignore: {headers: [X-Trace], json_pointers: [/ts]}
  noise_learning: {enabled: false}
  rebuild: {threshold: 0}
  max_per_client: 16
  max_conns_per_client: 20
  response_header_limit: 8192
  buffers: {spool_threshold: 65536, spool_dir: /tmp, memory_budget: 1048576, spool_budget: 4194304}
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
		o.IgnorePointers[0] != "/ts" || o.FailStatus != 502 || o.MaxPerClient != 16 || o.BodyTimeout != 3*time.Second ||
		o.ResponseHeaderLimit != 8192 || o.SpoolThreshold != 65536 || o.SpoolDir != "/tmp" || o.MemoryBudget != 1<<20 || o.SpoolBudget != 4<<20 {
		t.Fatalf("options %+v", o)
	}
	if s.ReadHeaderTimeout != time.Second || s.MaxHeaderBytes != 16<<10 || s.MaxConnsPerClient != 20 {
		t.Fatalf("server options %+v", s)
	}
	o.Backends = Static{{ID: "a", Addr: "http://127.0.0.1:1"}}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	d, _ := FromConfig(config.Default().Gateway)
	if !d.Learn || d.RebuildThreshold != 5 || d.K != 3 || d.MaxPerClient != 64 || d.BodyTimeout != 10*time.Second ||
		d.ResponseHeaderLimit != 64<<10 || d.SpoolThreshold != 256<<10 || d.SpoolDir != "" || d.MemoryBudget != 128<<20 || d.SpoolBudget != 2<<30 {
		t.Fatalf("defaults %+v", d)
	}
}
