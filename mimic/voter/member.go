package voter

// Member is one executor as a voter sees it.
type Member struct {
	ID      string            // stable for the executor's life; dissent and trust are kept per ID
	Variant string            // which heterogeneous variant it runs ("nginx", "unbound", ...)
	Addr    string            // where it answers: a base URL (http://127.0.0.1:8081) or host:port, as the adapter wants
	Traits  map[string]string // declared properties for the max-diversity scheduler
}

// Backends supplies the current set of healthy executors. It is called once per request, so
// it must be cheap (a snapshot) and safe for concurrent use. The slice is not modified.
type Backends interface {
	Backends() []Member
}

// InFlight is optionally implemented by a Backends source that counts requests in flight
// per executor (the pool drains an executor before stopping it). OnAcquire is called before
// a request is sent to id and OnRelease once its answer has been read or has failed.
type InFlight interface {
	OnAcquire(id string)
	OnRelease(id string)
}

// Static is a fixed set of executors for the standalone gateways and for tests.
type Static []Member

// Backends returns s itself.
func (s Static) Backends() []Member { return s }
