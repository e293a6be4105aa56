package voter

import (
	"encoding/json"
	"net/http"
)

// HealthHandler serves what status returns as JSON: 200 when it says ready, 503 when not (for
// load balancers and readiness probes); HEAD gets the status code alone.
func HealthHandler(status func() (v any, ready bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ready := status()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method != http.MethodHead {
			json.NewEncoder(w).Encode(v)
		}
	})
}
