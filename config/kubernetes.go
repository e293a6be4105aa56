package config

import (
	"fmt"
	"regexp"
	"time"

	"github.com/proteus-defense/proteus/strictyaml"
)

// Kubernetes is the pool.kubernetes section: where and how the kubernetes driver runs the
// variants whose driver is "kubernetes" (docs/operations.md, "Kubernetes").
type Kubernetes struct {
	// Namespace holds the executor pods, their NetworkPolicies and the pool's
	// PodDisruptionBudget. Empty: the agent's own namespace when it runs in the cluster,
	// else "default".
	Namespace string `yaml:"namespace"`
	// Kubeconfig is a kubeconfig file to reach the API server; empty: the in-cluster service
	// account.
	Kubeconfig string `yaml:"kubeconfig"`
	// Pool is the value of the proteus.io/pool label; two agents in one namespace need two
	// pools (default "proteus").
	Pool string `yaml:"pool"`
	// QuarantineRetention is how long a quarantined pod is kept, isolated, for forensics
	// before it is deleted (default 1h, at most 168h).
	QuarantineRetention time.Duration `yaml:"quarantine_retention"`
	// ReadyTimeout bounds how long a new pod may take to be scheduled and report Ready
	// (default 2m).
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// RunAsUser is the uid (and gid) executor containers run as; never 0 (default 65532).
	RunAsUser int64 `yaml:"run_as_user"`
}

// Kubernetes defaults and bounds.
const (
	DefaultKubernetesPool      = "proteus"
	maxQuarantineRetention     = 168 * time.Hour
	defaultQuarantineRetention = time.Hour
)

var (
	dnsLabelRe   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	labelValueRe = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?$`)
	digestPinRe  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
)

func (x *Kubernetes) applyDefaults() {
	if x.Pool == "" {
		x.Pool = DefaultKubernetesPool
	}
	if x.QuarantineRetention == 0 {
		x.QuarantineRetention = defaultQuarantineRetention
	}
	if x.ReadyTimeout == 0 {
		x.ReadyTimeout = 2 * time.Minute
	}
	if x.RunAsUser == 0 {
		x.RunAsUser = 65532
	}
}

// validate checks the section and the variants that use the kubernetes driver.
func (x *Kubernetes) validate(pool string, variants []Variant, p *strictyaml.Problems) {
	field := pool + ".kubernetes"
	if x.Namespace != "" && !dnsLabelRe.MatchString(x.Namespace) {
		p.Addf(field+".namespace", "must be a DNS label (lowercase letters, digits, '-', at most 63), got %q", x.Namespace)
	}
	if !dnsLabelRe.MatchString(x.Pool) || len(x.Pool) > 30 {
		p.Addf(field+".pool", "must be a DNS label of at most 30 characters (it prefixes pod names), got %q", x.Pool)
	}
	if x.QuarantineRetention <= 0 || x.QuarantineRetention > maxQuarantineRetention {
		p.Addf(field+".quarantine_retention", "must be in (0, %v], got %v", maxQuarantineRetention, x.QuarantineRetention)
	}
	if x.ReadyTimeout <= 0 {
		p.Addf(field+".ready_timeout", "must be a positive duration, got %v", x.ReadyTimeout)
	}
	if x.RunAsUser < 1 || x.RunAsUser > 1<<31-2 {
		p.Addf(field+".run_as_user", "must be a non-root uid in [1, 2147483646], got %d", x.RunAsUser)
	}
	for i, v := range variants {
		if v.Driver != "kubernetes" {
			continue
		}
		vf := fmt.Sprintf("%s.variants[%d]", pool, i)
		if !labelValueRe.MatchString(v.Name) {
			p.Addf(vf+".name", "must be a Kubernetes label value for the kubernetes driver (letters, digits, '-', '_', '.', starting and ending with a letter or digit), got %q", v.Name)
		}
		if !digestPinRe.MatchString(v.Image) {
			p.Addf(vf+".image", "must be pinned by digest (NAME@sha256:<64 hex>) for the kubernetes driver, got %q", v.Image)
		}
		if v.ContainerPort < 1 {
			p.Addf(vf+".container_port", "is required for the kubernetes driver")
		}
	}
}
