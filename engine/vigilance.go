package engine

import (
	"math"

	"github.com/proteus-defense/proteus/config"
)

// Tightening is what a vigilance level asks of the data path (config.Vigilance): the
// executors per voted request, the dissents that rebuild an executor and the factor on the
// rotation interval. Level 0 is the configured behaviour.
type Tightening struct {
	Level            int     `json:"level"`
	K                int     `json:"k"`
	RebuildThreshold int     `json:"rebuild_threshold"`
	RotationScale    float64 `json:"rotation_scale"`
}

// TightenFor is the Tightening at level for a gateway configured with k executors per vote
// and rebuild threshold t (0: never rebuilds).
func TightenFor(level int, v config.Vigilance, k, t int) Tightening {
	out := Tightening{Level: max(level, 0), K: k, RebuildThreshold: t, RotationScale: 1}
	if out.Level == 0 {
		return out
	}
	maxK := v.MaxK
	if maxK == 0 {
		maxK = k + 2
	}
	out.K = max(k, min(maxK, k+out.Level))
	if t > 0 {
		shift := min(out.Level, 30)
		out.RebuildThreshold = min(t, max(v.MinRebuildThreshold, (t+(1<<shift)-1)>>shift))
	}
	out.RotationScale = math.Pow(v.RotationFactor, float64(out.Level))
	return out
}
