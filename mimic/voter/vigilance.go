package voter

// Tighten applies the agent's vigilance to every vote of this core (k ≤ the adapter's
// configured k and threshold ≤ 0 return to the configured behaviour):
//
//   - at least k executors answer each voted request (Voters); the quorum is then a majority
//     of the executors asked, never less than the configured one, so a larger k with fewer
//     executors in service does not refuse requests a smaller k served;
//   - an executor is rebuilt after threshold dissents within the rebuild window when that is
//     fewer than the configured threshold (a core configured never to rebuild still never
//     does).
//
// It is safe to call while requests are served; each request reads it once.
func (c *Core) Tighten(k, threshold int) {
	c.vigilantK.Store(int32(max(k, 0)))
	c.trust.Tighten(threshold)
}

// Voters returns how many executors a request is sent to, and the quorum it needs, for an
// adapter configured with k and quorum q and n executors in service, under Tighten's k.
func (c *Core) Voters(k, q, n int) (int, int) {
	if v := int(c.vigilantK.Load()); v > k {
		k = v
		q = max(q, min(k, n)/2+1)
	}
	return k, q
}
