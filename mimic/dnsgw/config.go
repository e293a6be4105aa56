package dnsgw

import "github.com/proteus-defense/proteus/config"

// FromConfig maps the `dns:` config section to options. The caller fills in Backends, Bus,
// Logger, Rebuild and Metrics.
func FromConfig(c config.DNS) Options {
	o := Options{
		K: c.K, Quorum: c.Quorum, Scheduler: c.Scheduler, WaitAll: c.WaitAll,
		Timeout: c.Timeout, TTLTolerance: c.TTLTolerance, UDPSize: c.UDPSize, MaxQueryBytes: c.MaxQueryBytes,
		Rate: c.Rate, Burst: c.Burst, MaxInFlight: c.MaxInFlight, MaxTCPConns: c.MaxTCPConns, MaxTCPPerClient: c.MaxTCPPerClient,
		TCPReadTimeout: c.TCPReadTimeout, TCPIdleTimeout: c.TCPIdleTimeout, WriteTimeout: c.WriteTimeout,
		TrustWindow: c.TrustWindow, RebuildThreshold: c.RebuildThreshold(), RebuildWindow: c.Rebuild.Window,
		EjectAfter: c.EjectAfter(), EjectFor: c.Eject.For, EjectMax: c.Eject.Max,
	}
	if o.EjectAfter == 0 {
		o.EjectAfter = -1 // never, in Options' terms
	}
	return o
}
