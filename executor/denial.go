package executor

// Denial reasons: what kind of attempt an executor's confinement refused (EventDenied's
// attr "reason").
const (
	DeniedFile      = "file"      // opened a decoy of a hidden file: the agent's data, a sibling's work dir, the image
	DeniedSignal    = "signal"    // signalled a process outside its own PID namespace (the agent, say)
	DeniedSeccomp   = "seccomp"   // made a system call the filter kills (ptrace, mount, bpf, ...)
	DeniedNetwork   = "network"   // opened a connection the firewall refuses (this host, or outbound)
	DeniedMemory    = "memory"    // hit its memory limit (killed by the OOM killer)
	DeniedProcesses = "processes" // hit its process limit (a fork refused)
)

// Denial is one refused attempt, as EventDenied carries it. Its attrs are a stable shape
// (docs/architecture.md, "executor.denied"): every event has variant, reason, attempted,
// refused_by and category; Extra adds what the reason knows (path, access, target_pid,
// refused_packets, oom_kills, ...).
type Denial struct {
	Variant   string
	Reason    string // one of the Denied* constants
	Attempted string // what the executor tried, in words: "open /var/lib/proteus/api.token for read"
	RefusedBy string // what refused it: "fanotify", "pid namespace", "seccomp", "nftables", "cgroup memory", ...
	// Category is the security attribute the attempt went for: confidentiality (reading
	// what is not its own, connecting out), integrity (writing, or an open whose mode is
	// unknown, Extra["access"] other than "read"; signalling, forbidden calls) or availability (a resource limit: the executor stops answering, which the
	// gateway sees as an availability dissent). Empty: the reason's usual one.
	Category string
	Extra    map[string]any
}

// Attrs is the event's attribute map.
func (d Denial) Attrs() map[string]any {
	a := map[string]any{}
	for k, v := range d.Extra {
		a[k] = v
	}
	cat := d.Category
	if access, _ := d.Extra["access"].(string); cat == "" && d.Reason == DeniedFile && access != "read" {
		cat = "integrity" // a write, or an open whose mode is unknown
	}
	if cat == "" {
		cat = map[string]string{DeniedFile: "confidentiality", DeniedNetwork: "confidentiality", DeniedSignal: "integrity",
			DeniedSeccomp: "integrity", DeniedMemory: "availability", DeniedProcesses: "availability"}[d.Reason]
	}
	a["variant"], a["reason"], a["attempted"], a["refused_by"], a["category"] = d.Variant, d.Reason, d.Attempted, d.RefusedBy, cat
	return a
}
