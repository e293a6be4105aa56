package mimic

import (
	"github.com/proteus-defense/proteus/config"
)

// FromConfig maps the `gateway:` config section to gateway and server options. The caller
// fills in Backends, Blocklist, Bus, Logger, Rebuild and Metrics.
func FromConfig(c config.Gateway) (Options, ServerOptions) {
	o := Options{
		K:                   c.K,
		Quorum:              c.Quorum,
		Scheduler:           c.Scheduler,
		UpstreamTimeout:     c.Timeouts.Upstream,
		BodyLimit:           c.BodyLimit,
		ResponseLimit:       c.ResponseLimit,
		MaxInFlight:         c.MaxInFlight,
		MaxPerClient:        c.MaxPerClient,
		BodyTimeout:         c.Timeouts.Body,
		ResponseHeaderLimit: c.ResponseHeaderLimit,
		SpoolThreshold:      c.Buffers.SpoolThreshold,
		SpoolDir:            c.Buffers.SpoolDir,
		MemoryBudget:        c.Buffers.MemoryBudget,
		SpoolBudget:         c.Buffers.SpoolBudget,
		IgnoreHeaders:       c.Ignore.Headers,
		IgnorePointers:      c.Ignore.JSONPointers,
		FoldHTML:            c.FoldHTML,
		CompareErrorBodies:  c.CompareErrorBodies,
		ServerHeader:        c.ServerHeader,
		MaxHeaderBytes:      c.MaxHeaderBytes,
		Learn:               c.LearningEnabled(),
		LearnMinSamples:     c.NoiseLearning.MinSamples,
		FailStatus:          c.FailStatus,
		WaitAll:             c.WaitAll,
		Jitter:              c.Jitter,
		TrustWindow:         c.TrustWindow,
		RebuildThreshold:    c.RebuildThreshold(),
		RebuildWindow:       c.Rebuild.Window,
		EjectAfter:          c.EjectAfter(),
		EjectFor:            c.Eject.For,
		EjectMax:            c.Eject.Max,
	}
	for _, tp := range c.TrustedProxies {
		if p, err := config.ParsePrefixOrAddr(tp); err == nil { // validated with the config
			o.TrustedProxies = append(o.TrustedProxies, p)
		}
	}
	o.AccessLogFile = c.AccessLog
	if len(c.Identities) > 0 {
		o.Identities, o.Signal = make(map[string]Identity, len(c.Identities)), c.Signal
		for sig, id := range c.Identities {
			o.Identities[sig] = Identity{Server: id.Server, Pages: StylePages(id.Pages, id.Server)}
		}
	}
	if o.EjectAfter == 0 {
		o.EjectAfter = -1 // never, in Options' terms
	}
	for _, r := range c.Routes {
		o.Routes = append(o.Routes, Route{Prefix: r.Prefix, Methods: r.Methods, Policy: Policy(r.Policy), CompareErrorBodies: r.CompareErrorBodies})
	}
	s := ServerOptions{
		ReadHeaderTimeout: c.Timeouts.ReadHeader,
		ReadTimeout:       c.Timeouts.Read,
		WriteTimeout:      c.Timeouts.Write,
		IdleTimeout:       c.Timeouts.Idle,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		TLSCert:           c.TLS.Cert,
		TLSKey:            c.TLS.Key,
		H2C:               c.H2C,
		MaxConnsPerClient: c.MaxConnsPerClient,
		TrustedProxies:    o.TrustedProxies,
	}
	return o, s
}
