package mimic

// Tighten applies the agent's vigilance to the vote (k ≤ Options.K and threshold ≤ 0 return
// to the configured behaviour):
//
//   - at least k executors answer each voted request (never fewer than Options.K); the
//     quorum is then a majority of the executors asked (never less than Options.Quorum), so
//     a larger k with fewer executors in service does not refuse requests a smaller k served;
//   - an executor is rebuilt after threshold dissents within RebuildWindow when that is
//     fewer than Options.RebuildThreshold (a gateway configured never to rebuild still never
//     does).
//
// It is safe to call while requests are served; each request reads it once.
func (g *Gateway) Tighten(k, threshold int) {
	g.vigilantK.Store(int32(max(k, 0)))
	g.core.Trust().Tighten(threshold)
}

// Voters returns how many executors a voted request with n executors in service is sent to,
// and the quorum it needs.
func (g *Gateway) Voters(n int) (k, quorum int) { return g.voters(n) }

func (g *Gateway) voters(n int) (k, q int) {
	k, q = g.o.K, g.o.Quorum
	if v := int(g.vigilantK.Load()); v > k {
		k = v
		q = max(q, min(k, n)/2+1)
	}
	return k, q
}
