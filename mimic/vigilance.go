package mimic

// Tighten applies the agent's vigilance to the vote (voter.Core.Tighten: k ≤ Options.K and
// threshold ≤ 0 return to the configured behaviour): at least k executors answer each voted
// request, the quorum a majority of those asked but never below Options.Quorum, and an
// executor is rebuilt after threshold dissents when that is fewer than
// Options.RebuildThreshold. It is safe to call while requests are served; each request reads
// it once.
func (g *Gateway) Tighten(k, threshold int) { g.core.Tighten(k, threshold) }

// Voters returns how many executors a voted request with n executors in service is sent to,
// and the quorum it needs.
func (g *Gateway) Voters(n int) (k, quorum int) { return g.voters(n) }

func (g *Gateway) voters(n int) (k, q int) { return g.core.Voters(g.o.K, g.o.Quorum, n) }
