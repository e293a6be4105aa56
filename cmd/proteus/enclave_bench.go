package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/proteus-defense/proteus/enclave"
)

func init() { addEnclaveCommand(newEnclaveBenchCmd) }

// benchResult is what `proteus enclave bench -o json` prints. Latency is from the publish
// call at one peer to the decision on it at each other peer (same machine, same clock): the
// propagation, validation and decision; what the decision applies depends on the evidence
// (a lone peer's report defers). CPU and memory come from /proc for each peer process.
type benchResult struct {
	Peers    int `json:"peers"`
	Messages int `json:"messages"`
	// Flood is how many sightings one member published as fast as it could while the
	// others published Messages; FloodSeconds how long that took.
	Flood        int     `json:"flood,omitempty"`
	FloodSeconds float64 `json:"flood_s,omitempty"`
	// FlooderCPUms is the CPU time the flooding member's process used (it shares the
	// machine with the others).
	FlooderCPUms float64 `json:"flooder_cpu_ms,omitempty"`
	// FloodAcceptedAvg and Max are how many of the flooder's sightings an honest peer
	// accepted (and decided on), averaged over the honest peers, and the most at one.
	FloodAcceptedAvg float64 `json:"flood_accepted_avg,omitempty"`
	FloodAcceptedMax int     `json:"flood_accepted_max,omitempty"`
	// Unbudgeted is set when the nodes ran without per-peer budgets (--unbudgeted).
	Unbudgeted bool `json:"unbudgeted,omitempty"`
	// AcceptedAvg and LimitedAvg are, per honest peer over the measured phase, the messages
	// its topic validator accepted and those it dropped as over their author's budget
	// (Stats.Accepted and Stats.Limited): under a flood, how much of it each peer took in.
	AcceptedAvg float64 `json:"accepted_avg"`
	LimitedAvg  float64 `json:"limited_avg"`
	Samples     int     `json:"samples"`
	Missing     int     `json:"missing"`
	P50         float64 `json:"p50_ms"`
	P99         float64 `json:"p99_ms"`
	Max         float64 `json:"max_ms"`
	// ApplyP50/P99 is the part spent applying a countermeasure where one was applied
	// (decision to applied: the actuator made it effective; the journal is written after,
	// in the background).
	ApplyP50 float64 `json:"apply_p50_ms"`
	ApplyP99 float64 `json:"apply_p99_ms"`
	RSSAvgMB float64 `json:"rss_mb_avg"`
	RSSMaxMB float64 `json:"rss_mb_max"`
	// RSSBeforeAvgMB is the honest peers' RSS before the measured phase (averaged), and
	// HWMMaxMB the highest VmHWM (peak RSS) of an honest peer at its end.
	RSSBeforeAvgMB float64 `json:"rss_mb_before_avg"`
	HWMMaxMB       float64 `json:"hwm_mb_max"`
	// CPU is the CPU time each peer used while the messages were published and applied,
	// averaged over peers, and as a share of one core over that interval.
	CPUmsPerPeer  float64 `json:"cpu_ms_per_peer"`
	CPUPctPerPeer float64 `json:"cpu_pct_per_peer"`
	// IdleCPUPctPerPeer is the share of a core each peer used while no message flowed
	// (the 2 s before publishing: heartbeats, peer scoring, timers).
	IdleCPUPctPerPeer float64 `json:"idle_cpu_pct_per_peer"`
	WallSeconds       float64 `json:"wall_s"`
	// PerDelivery is what GossipSub moved at an honest peer per sighting delivered to it
	// (the peers' traffic counters over the measured phase, summed, over the deliveries):
	// RPCs read and written, messages in them, control-only RPCs written, duplicates read.
	PerDelivery *benchTraffic `json:"per_delivery,omitempty"`
	// CPUPerDeliveryUs is the honest peers' CPU time over their deliveries, in µs.
	CPUPerDeliveryUs float64 `json:"cpu_us_per_delivery"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average around the run.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
}

type benchTraffic struct {
	RPCIn      float64 `json:"rpc_in"`
	RPCOut     float64 `json:"rpc_out"`
	MsgIn      float64 `json:"msg_in"`
	MsgOut     float64 `json:"msg_out"`
	ControlOut float64 `json:"control_out"`
	Duplicates float64 `json:"duplicates"`
}

// trafficOf sums the traffic counters of nodes.
func trafficOf(ctx context.Context, nodes []*benchNode) (enclave.Traffic, error) {
	var t enclave.Traffic
	for _, b := range nodes {
		st, err := b.cl.Status(ctx)
		if err != nil {
			return t, err
		}
		x := st.Traffic
		t.RPCIn += x.RPCIn
		t.RPCOut += x.RPCOut
		t.MsgIn += x.MsgIn
		t.MsgOut += x.MsgOut
		t.ControlOut += x.ControlOut
		t.Duplicates += x.Duplicates
		t.Delivered += x.Delivered
	}
	return t, nil
}

// statsOf sums the topic validator counters of nodes.
func statsOf(ctx context.Context, nodes []*benchNode) (enclave.Stats, error) {
	var s enclave.Stats
	for _, b := range nodes {
		st, err := b.cl.Status(ctx)
		if err != nil {
			return s, err
		}
		s.Accepted += st.Stats.Accepted
		s.Limited += st.Stats.Limited
	}
	return s, nil
}

func loadAvg() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func newEnclaveBenchCmd() *cobra.Command {
	var peers, messages, flood, floodNice int
	var output *string
	var keep, verbose, unbudgeted bool
	var dir, profDir string
	c := &cobra.Command{
		Use:   "bench --peers N",
		Short: "Start N enclave nodes on loopback as separate processes and measure publish-to-countermeasure latency",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output); err != nil {
				return err
			}
			if peers < 2 || peers > 200 {
				return fmt.Errorf("%w: --peers must be in [2,200], got %d", errUsage, peers)
			}
			if messages < 1 || messages > 1000 {
				return fmt.Errorf("%w: --messages must be in [1,1000], got %d", errUsage, messages)
			}
			if flood < 0 || flood > 100000 || (flood > 0 && peers < 3) {
				return fmt.Errorf("%w: --flood must be in [0,100000] and needs --peers >= 3, got %d", errUsage, flood)
			}
			if floodNice < 0 || floodNice > 19 {
				return fmt.Errorf("%w: --flooder-nice must be in [0,19], got %d", errUsage, floodNice)
			}
			res, err := runEnclaveBench(cmd.Context(), benchOptions{peers: peers, messages: messages, flood: flood, floodNice: floodNice,
				dir: dir, profDir: profDir, keep: keep, verbose: verbose, unbudgeted: unbudgeted}, cmd)
			if err != nil {
				return err
			}
			if *output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "peers %d, messages %d, samples %d (missing %d)\npublish→decided p50 %.2f ms, p99 %.2f ms, max %.2f ms\nper peer: RSS avg %.1f MB (max %.1f), CPU %.0f ms (%.1f%% of a core)\n",
				res.Peers, res.Messages, res.Samples, res.Missing, res.P50, res.P99, res.Max, res.RSSAvgMB, res.RSSMaxMB, res.CPUmsPerPeer, res.CPUPctPerPeer)
			if res.Flood > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "during a flood of %d sightings from one member (%.1f s)\n", res.Flood, res.FloodSeconds)
			}
			return nil
		},
	}
	c.Flags().IntVar(&peers, "peers", 5, "number of nodes")
	c.Flags().IntVar(&messages, "messages", 20, "sightings to publish (from rotating peers, 100 ms apart)")
	c.Flags().IntVar(&flood, "flood", 0, "meanwhile, the last peer publishes this many sightings as fast as it can (the others' latency and memory are measured)")
	c.Flags().IntVar(&floodNice, "flooder-nice", 0, "run the flooding member at this nice value (0-19): on one machine its CPU is taken from the peers it floods, which on its own host it would not be")
	c.Flags().StringVar(&dir, "dir", "", "parent of the nodes' data dirs (default $TMPDIR); a tmpfs such as /dev/shm makes the journal's background fsync free")
	c.Flags().StringVar(&profDir, "cpuprofile-dir", "", "write each node's CPU profile (pprof) to DIR/peerNNN.pprof; merge them with `go tool pprof -proto DIR/*.pprof`")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the slowest deliveries (peer, message, ms) to stderr")
	c.Flags().BoolVar(&unbudgeted, "unbudgeted", false, "run every node without per-peer budgets (limits at their maxima: rate 10000/s, burst 100000, reports 1000000), as the enclave was before issue 18, for comparison")
	c.Flags().BoolVar(&keep, "keep", false, "keep the temporary directory with every node's data and log")
	output = outputFlag(c)
	return c
}

type benchNode struct {
	dir  string
	id   string
	cmd  *exec.Cmd
	done chan struct{}
	cl   *enclave.Client
}

type benchOptions struct {
	peers, messages, flood, floodNice int
	dir, profDir                      string
	keep, verbose, unbudgeted         bool
}

func runEnclaveBench(ctx context.Context, o benchOptions, cmd *cobra.Command) (*benchResult, error) {
	n, messages, flood, dir, profDir, keep, verbose := o.peers, o.messages, o.flood, o.dir, o.profDir, o.keep, o.verbose
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp(dir, "proteus-enclave-bench-")
	if err != nil {
		return nil, err
	}
	if keep {
		fmt.Fprintf(cmd.ErrOrStderr(), "bench data in %s\n", root)
	} else {
		defer os.RemoveAll(root)
	}
	key, err := enclave.GenerateEnclaveKey()
	if err != nil {
		return nil, err
	}
	pub := enclave.PublicKeyString(key.Public().(ed25519.PublicKey))
	nodes := make([]*benchNode, n)
	for i := range nodes {
		b := &benchNode{dir: filepath.Join(root, fmt.Sprintf("peer%03d", i))}
		if err := os.MkdirAll(b.dir, 0o700); err != nil {
			return nil, err
		}
		k, err := enclave.LoadIdentity(b.dir)
		if err != nil {
			return nil, err
		}
		id, err := enclave.PeerIDOf(k)
		if err != nil {
			return nil, err
		}
		b.id = id.String()
		c, err := enclave.Admit(key, "bench", id, time.Now(), 24*time.Hour)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(b.dir, "member.cert"), c.Marshal(), 0o600); err != nil {
			return nil, err
		}
		nodes[i] = b
	}
	defer func() {
		for _, b := range nodes {
			if b.cmd != nil && b.cmd.Process != nil {
				_ = b.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, b := range nodes {
			if b.done == nil {
				continue
			}
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				_ = b.cmd.Process.Kill()
				<-b.done
			}
		}
	}()
	// Nodes start one after another on ephemeral ports; node i dials nodes i-1, i-2, i-4,
	// i-8, ...: a connected graph of small diameter.
	addrs := make([]string, n)
	for i, b := range nodes {
		var boot []string
		for d := 1; i-d >= 0; d *= 2 {
			boot = append(boot, addrs[i-d])
		}
		yaml := fmt.Sprintf(`version: 1
log: {level: warn, format: text}
enclave:
  enabled: true
  name: bench
  key: %s
  certificate: member.cert
  listen: [/ip4/127.0.0.1/tcp/0]
  bootstrap: [%s]
  exposure: {os: linux, services: [{port: 22}]}
  decision: {act: 0.5, defer: 0.2}
  peer_score: {colocation_whitelist: [127.0.0.0/8]}
`, pub, strings.Join(boot, ", "))
		if o.unbudgeted {
			yaml += "  limits: {rate: 10000, burst: 100000, reports: 1000000}\n"
		}
		cfg := filepath.Join(b.dir, "enclave.yaml")
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(b.dir, "node.log"))
		if err != nil {
			return nil, err
		}
		args := []string{"--data-dir", b.dir, "enclave", "run", "-c", cfg}
		if profDir != "" {
			args = append(args, "--cpuprofile", filepath.Join(profDir, fmt.Sprintf("peer%03d.pprof", i)))
		}
		if flood > 0 && i == n-1 {
			args = append(args, "--unpaced") // a flooder does not pace itself
		}
		b.cmd = exec.Command(self, args...)
		b.cmd.Stdout, b.cmd.Stderr = logf, logf
		if err := b.cmd.Start(); err != nil {
			logf.Close()
			return nil, err
		}
		logf.Close()
		if flood > 0 && i == n-1 && o.floodNice > 0 {
			if err := syscall.Setpriority(syscall.PRIO_PROCESS, b.cmd.Process.Pid, o.floodNice); err != nil {
				return nil, fmt.Errorf("enclave: bench: nice the flooder: %w", err)
			}
		}
		b.done = make(chan struct{})
		go func(b *benchNode) { _ = b.cmd.Wait(); close(b.done) }(b)
		deadline := time.Now().Add(30 * time.Second)
		for {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("enclave: bench: node %s not ready (see %s)", b.id, filepath.Join(b.dir, "node.log"))
			}
			select {
			case <-b.done:
				log, _ := os.ReadFile(filepath.Join(b.dir, "node.log"))
				return nil, fmt.Errorf("enclave: bench: node %d exited: %s", i, log)
			default:
			}
			if b.cl == nil {
				b.cl, _ = enclave.Dial(b.dir)
			}
			if b.cl != nil {
				if st, err := b.cl.Status(ctx); err == nil && len(st.Addrs) > 0 {
					addrs[i] = st.Addrs[0]
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Wait until every node sees enough topic peers.
	want := n - 1
	if want > 3 {
		want = 3
	}
	deadline := time.Now().Add(time.Duration(30+n) * time.Second)
	for _, b := range nodes {
		for {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("enclave: bench: node %s sees too few peers (see %s)", b.id, filepath.Join(b.dir, "node.log"))
			}
			if st, err := b.cl.Status(ctx); err == nil && st.TopicPeers >= want {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	idle0 := make([]float64, n)
	for i, b := range nodes {
		idle0[i] = procCPUms(b.cmd.Process.Pid)
	}
	const settle = 2 * time.Second
	time.Sleep(settle) // two GossipSub heartbeats: let the mesh settle
	var idle float64
	for i, b := range nodes {
		idle += procCPUms(b.cmd.Process.Pid) - idle0[i]
	}

	if profDir != "" {
		for _, b := range nodes {
			_ = b.cmd.Process.Signal(syscall.SIGUSR1)
		}
	}
	honest := n
	if flood > 0 {
		honest = n - 1
	}
	loadBefore := loadAvg()
	traffic0, err := trafficOf(ctx, nodes[:honest])
	if err != nil {
		return nil, err
	}
	stats0, err := statsOf(ctx, nodes[:honest])
	if err != nil {
		return nil, err
	}
	var rssBefore float64
	for _, b := range nodes[:honest] {
		rssBefore += procRSSMB(b.cmd.Process.Pid)
	}
	cpu0 := make([]float64, n)
	for i, b := range nodes {
		cpu0[i] = procCPUms(b.cmd.Process.Pid)
	}
	start := time.Now()
	type pubRec struct {
		from, seq int
		at        time.Time
	}
	type slow struct {
		peer, seq int
		ms        float64
	}
	var slowest []slow
	res0 := &benchResult{}
	published := map[string]pubRec{}
	floodDone := make(chan error, 1)
	var floodWall time.Duration
	if flood > 0 {
		go func() {
			t0 := time.Now()
			err := benchFlood(ctx, nodes[n-1].cl, flood)
			floodWall = time.Since(t0)
			floodDone <- err
		}()
	}
	for m := 0; m < messages; m++ {
		from := m % honest
		target := fmt.Sprintf("10.%d.%d.%d", 100+m/65536%100, m/256%256, m%256)
		res, err := nodes[from].cl.Publish(ctx, target, 100, time.Hour, "block", "bench")
		if err != nil {
			return nil, fmt.Errorf("enclave: bench: publish: %w", err)
		}
		published[res.Indicator] = pubRec{from: from, seq: m, at: res.PublishedAt}
		time.Sleep(100 * time.Millisecond)
	}
	if flood > 0 {
		if err := <-floodDone; err != nil {
			return nil, err
		}
	}
	var lat, apply []float64
	missing, floodAccepted := 0, 0
	perMsg := make([][]float64, messages) // latencies by message, for -v
	collectBy := time.Now().Add(10 * time.Second)
	for i, b := range nodes[:honest] {
		for {
			recs, err := b.cl.Decisions(ctx, "")
			if err != nil {
				return nil, err
			}
			got := map[string]enclave.DecisionRecord{}
			fromFlooder := 0
			for _, r := range recs {
				if _, ok := published[r.Indicator]; ok && r.Event == "sighting" {
					got[r.Indicator] = r
				}
				if flood > 0 && r.Event == "sighting" && r.Reporter == nodes[n-1].id {
					fromFlooder++
				}
			}
			expected := 0
			for _, p := range published {
				if p.from != i {
					expected++
				}
			}
			if len(got) >= expected || time.Now().After(collectBy) {
				floodAccepted += fromFlooder
				res0.FloodAcceptedMax = max(res0.FloodAcceptedMax, fromFlooder)
				for ind, p := range published {
					if p.from == i {
						continue
					}
					r, ok := got[ind]
					if !ok {
						missing++
						continue
					}
					lat = append(lat, float64(r.Time.Sub(p.at).Microseconds())/1000)
					slowest = append(slowest, slow{i, p.seq, lat[len(lat)-1]})
					perMsg[p.seq] = append(perMsg[p.seq], lat[len(lat)-1])
					if r.Applied {
						apply = append(apply, float64(r.AppliedAt.Sub(r.Time).Microseconds())/1000)
					}
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wall := time.Since(start)
	if verbose {
		sort.Slice(slowest, func(a, b int) bool { return slowest[a].ms > slowest[b].ms })
		for _, x := range slowest[:min(len(slowest), 60)] {
			fmt.Fprintf(cmd.ErrOrStderr(), "slow: peer %d message %d %.1f ms\n", x.peer, x.seq, x.ms)
		}
		for m, xs := range perMsg[:min(len(perMsg), 10)] {
			if len(xs) == 0 {
				continue
			}
			sort.Float64s(xs)
			fmt.Fprintf(cmd.ErrOrStderr(), "message %d: p50 %.1f ms, max %.1f ms over %d peers\n", m, percentile(xs, 0.5), xs[len(xs)-1], len(xs))
		}
	}
	res := res0
	res.Peers, res.Messages, res.Samples, res.Missing, res.WallSeconds = n, messages, len(lat), missing, round2(wall.Seconds())
	res.Flood, res.FloodSeconds = flood, round2(floodWall.Seconds())
	if flood > 0 {
		res.FloodAcceptedAvg = round2(float64(floodAccepted) / float64(honest))
	}
	var cpu, rssSum float64
	for i, b := range nodes[:honest] {
		cpu += procCPUms(b.cmd.Process.Pid) - cpu0[i]
		rss := procRSSMB(b.cmd.Process.Pid)
		rssSum += rss
		res.HWMMaxMB = max(res.HWMMaxMB, procStatusMB(b.cmd.Process.Pid, "VmHWM:"))
		if rss > res.RSSMaxMB {
			res.RSSMaxMB = rss
		}
	}
	if flood > 0 {
		res.FlooderCPUms = round2(procCPUms(nodes[n-1].cmd.Process.Pid) - cpu0[n-1])
	}
	traffic1, err := trafficOf(ctx, nodes[:honest])
	if err != nil {
		return nil, err
	}
	res.LoadBefore, res.LoadAfter = loadBefore, loadAvg()
	if d := float64(traffic1.Delivered - traffic0.Delivered); d > 0 {
		per := func(a, b uint64) float64 { return round2(float64(a-b) / d) }
		res.PerDelivery = &benchTraffic{RPCIn: per(traffic1.RPCIn, traffic0.RPCIn), RPCOut: per(traffic1.RPCOut, traffic0.RPCOut),
			MsgIn: per(traffic1.MsgIn, traffic0.MsgIn), MsgOut: per(traffic1.MsgOut, traffic0.MsgOut),
			ControlOut: per(traffic1.ControlOut, traffic0.ControlOut), Duplicates: per(traffic1.Duplicates, traffic0.Duplicates)}
		res.CPUPerDeliveryUs = round2(1000 * cpu / d)
	}
	stats1, err := statsOf(ctx, nodes[:honest])
	if err != nil {
		return nil, err
	}
	res.Unbudgeted = o.unbudgeted
	res.AcceptedAvg = round2(float64(stats1.Accepted-stats0.Accepted) / float64(honest))
	res.LimitedAvg = round2(float64(stats1.Limited-stats0.Limited) / float64(honest))
	res.RSSBeforeAvgMB = round2(rssBefore / float64(honest))
	res.HWMMaxMB = round2(res.HWMMaxMB)
	res.RSSAvgMB = round2(rssSum / float64(honest))
	res.RSSMaxMB = round2(res.RSSMaxMB)
	res.CPUmsPerPeer = round2(cpu / float64(honest))
	res.IdleCPUPctPerPeer = round2(100 * idle / float64(n) / float64(settle.Milliseconds()))
	res.CPUPctPerPeer = round2(100 * res.CPUmsPerPeer / float64(wall.Milliseconds()))
	if len(lat) > 0 {
		sort.Float64s(lat)
		res.P50 = round2(percentile(lat, 0.50))
		res.P99 = round2(percentile(lat, 0.99))
		res.Max = round2(lat[len(lat)-1])
	}
	if len(apply) > 0 {
		sort.Float64s(apply)
		res.ApplyP50 = round2(percentile(apply, 0.50))
		res.ApplyP99 = round2(percentile(apply, 0.99))
	}
	return res, nil
}

// benchFlood publishes count sightings through cl with 8 concurrent requests.
func benchFlood(ctx context.Context, cl *enclave.Client, count int) error {
	jobs := make(chan int)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			var first error
			for m := range jobs {
				target := fmt.Sprintf("10.%d.%d.%d", 200+m/65536%50, m/256%256, m%256)
				// watch: the flooder's own decisions stay cheap (one shared vigilance
				// action), so the bench measures the flood at the others, not the
				// flooder's journal competing for the machine's CPU.
				if _, err := cl.Publish(ctx, target, 100, time.Hour, "watch", "flood"); err != nil && first == nil {
					first = fmt.Errorf("enclave: bench: flood: %w", err)
				}
			}
			errs <- first
		}()
	}
	for m := 0; m < count; m++ {
		jobs <- m
	}
	close(jobs)
	var first error
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// percentile of sorted xs by the nearest-rank method.
func percentile(xs []float64, q float64) float64 {
	i := int(float64(len(xs))*q+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= len(xs) {
		i = len(xs) - 1
	}
	return xs[i]
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }

// procCPUms is utime+stime of pid in milliseconds (from /proc/PID/stat, clock ticks of 10 ms).
func procCPUms(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) * 10
}

// procRSSMB is VmRSS of pid in MiB (from /proc/PID/status).
func procRSSMB(pid int) float64 { return procStatusMB(pid, "VmRSS:") }

// procStatusMB is the field (such as "VmRSS:" or "VmHWM:", in kB) of /proc/PID/status in MiB.
func procStatusMB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
