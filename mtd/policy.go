// Package mtd owns moving target defense policy: when executors are rotated. It turns the
// rotation section of the config into a Policy (interval with random jitter, cron, maximum
// lifetime), runs the Scheduler that asks the executor pool to rotate instances when their
// time comes, and exports the pool's MTD figures (c*, measured reconfiguration rate, instance
// ages, transitions, rotation durations) as Prometheus metrics.
//
// Rotation itself (make-before-break, the c* cap, draining, redraw of variants, fresh ports)
// is the pool's job (executor.Pool); this package only decides when. It imports executor,
// config, strictyaml (for located validation errors), bus and the cron and Prometheus
// libraries; it must not import mimic, engine, api or cmd.
package mtd

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/strictyaml"
)

// Policy decides when executors are due for rotation. The zero Policy never rotates.
type Policy struct {
	EveryMin, EveryMax time.Duration // per-instance interval, drawn uniformly; 0 = off
	MaxLifetime        time.Duration // 0 = off
	Cron               cron.Schedule // nil = off; every tick rotates all instances
	CronSpec           string
}

// cronParser accepts standard 5-field expressions and descriptors (@hourly, @every 5m).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// PolicyFromConfig builds a Policy from the rotation section, parsing the cron expression
// fully. Errors wrap strictyaml.ErrInvalid (exit code 2) and name the field.
func PolicyFromConfig(file string, r config.Rotation) (Policy, error) {
	var p Policy
	var probs strictyaml.Problems
	if r.Every != "" {
		lo, hi, err := config.ParseEvery(r.Every)
		if err != nil {
			probs.Addf("pool.rotation.every", "%v", err)
		}
		p.EveryMin, p.EveryMax = lo, hi
	}
	if r.Cron != "" {
		s, err := cronParser.Parse(r.Cron)
		if err != nil {
			probs.Addf("pool.rotation.cron", "%v", err)
		}
		p.Cron, p.CronSpec = s, r.Cron
	}
	if r.MaxLifetime < 0 {
		probs.Addf("pool.rotation.max_lifetime", "must be >= 0")
	}
	p.MaxLifetime = r.MaxLifetime
	if err := probs.Err(file); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Scaled is p with its interval (EveryMin, EveryMax) multiplied by f in (0, 1], neither
// below floor (nor below what it was, when that was shorter than floor already); cron and
// the maximum lifetime are kept. f ≥ 1 returns p.
func (p Policy) Scaled(f float64, floor time.Duration) Policy {
	if f >= 1 || !(f > 0) || p.EveryMax == 0 {
		return p
	}
	scale := func(d time.Duration) time.Duration {
		return max(time.Duration(float64(d)*f), min(floor, d))
	}
	p.EveryMin, p.EveryMax = scale(p.EveryMin), scale(p.EveryMax)
	return p
}

// Enabled reports whether the policy ever rotates on its own.
func (p Policy) Enabled() bool { return p.EveryMax > 0 || p.MaxLifetime > 0 || p.Cron != nil }

// Deadline is when an instance started at started is due: a uniform draw in
// [EveryMin, EveryMax] after its start, or its maximum lifetime if that comes first. The zero
// time means never.
func (p Policy) Deadline(started time.Time, rng *rand.Rand) time.Time {
	var due time.Time
	if p.EveryMax > 0 {
		d := p.EveryMin
		if span := p.EveryMax - p.EveryMin; span > 0 {
			d += time.Duration(rng.Int64N(int64(span) + 1))
		}
		due = started.Add(d)
	}
	if p.MaxLifetime > 0 {
		if lim := started.Add(p.MaxLifetime); due.IsZero() || lim.Before(due) {
			due = lim
		}
	}
	return due
}

// NextCron is the first cron tick after t, or the zero time without cron.
func (p Policy) NextCron(t time.Time) time.Time {
	if p.Cron == nil {
		return time.Time{}
	}
	return p.Cron.Next(t)
}

// String describes the policy for logs.
func (p Policy) String() string {
	s := ""
	if p.EveryMax > 0 {
		s += fmt.Sprintf("every %v-%v ", p.EveryMin, p.EveryMax)
	}
	if p.MaxLifetime > 0 {
		s += fmt.Sprintf("max_lifetime %v ", p.MaxLifetime)
	}
	if p.Cron != nil {
		s += fmt.Sprintf("cron %q ", p.CronSpec)
	}
	if s == "" {
		return "on request only"
	}
	return s[:len(s)-1]
}
