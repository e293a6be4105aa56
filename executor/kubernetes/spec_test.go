package kubernetes

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/proteus-defense/proteus/executor"
)

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testSpec(variant string) executor.Spec {
	return executor.Spec{Variant: variant, Driver: ID, Image: "registry.test/demo@" + testDigest, ContainerPort: 8080,
		HealthPath: "/healthz", Command: []string{"demo-server", "--listen", "{{.Addr}}"}, Env: map[string]string{"B": "2", "A": "1"},
		Traits: map[string]string{"server": "demo"}}
}

// The pod spec is hardened whatever the variant asks for (pure logic: no cluster needed).
func TestPodSpecHardened(t *testing.T) {
	d := &Driver{opts: Options{Namespace: "ns", Pool: "p", RunAsUser: 4242, StopGrace: 3 * time.Second, Memory: 64 << 20, CPU: 0.25,
		Owner: &metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: "agent", UID: "u-1"}}}
	p, err := d.podFor(testSpec("nginx_1.27"), "abc123")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "proteus-p-nginx-1-27-abc123" || p.Namespace != "ns" {
		t.Errorf("name %s/%s", p.Namespace, p.Name)
	}
	for k, v := range map[string]string{LabelManagedBy: ManagedBy, LabelPool: "p", LabelVariant: "nginx_1.27", LabelExecutor: "abc123", LabelRole: RoleExecutor, labelEgress: "deny"} {
		if p.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, p.Labels[k], v)
		}
	}
	if len(p.OwnerReferences) != 1 || p.OwnerReferences[0].UID != "u-1" {
		t.Errorf("owner references %+v", p.OwnerReferences)
	}
	s := p.Spec
	if s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken {
		t.Error("service-account token mounted")
	}
	if s.RestartPolicy != corev1.RestartPolicyNever || s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("restart %s host net/pid/ipc %v %v %v", s.RestartPolicy, s.HostNetwork, s.HostPID, s.HostIPC)
	}
	if *s.TerminationGracePeriodSeconds != 3 || *s.SecurityContext.RunAsUser != 4242 || !*s.SecurityContext.RunAsNonRoot {
		t.Errorf("grace %d uid %d", *s.TerminationGracePeriodSeconds, *s.SecurityContext.RunAsUser)
	}
	c := s.Containers[0]
	sc := c.SecurityContext
	if !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || *sc.Privileged || len(sc.Capabilities.Drop) != 1 ||
		sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container security context %+v", sc)
	}
	if c.Image != "registry.test/demo@"+testDigest || strings.Join(c.Args, " ") != "demo-server --listen 0.0.0.0:8080" {
		t.Errorf("image %s args %q", c.Image, c.Args)
	}
	if c.Env[0].Name != "A" || c.Env[1].Name != "B" {
		t.Errorf("env not sorted: %+v", c.Env)
	}
	if m := c.Resources.Limits[corev1.ResourceMemory]; m.Value() != 64<<20 {
		t.Errorf("memory limit %s", m.String())
	}
	if q := c.Resources.Limits[corev1.ResourceCPU]; q.MilliValue() != 250 {
		t.Errorf("cpu limit %s", q.String())
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("readiness probe %+v", c.ReadinessProbe)
	}
	if got := isolationSummary(p); !strings.Contains(got, "read-only root") || !strings.Contains(got, "uid 4242") || !strings.Contains(got, "egress denied") {
		t.Errorf("isolation summary %q", got)
	}
	allow := testSpec("go")
	allow.AllowOutbound = true
	if p, _ := d.podFor(allow, "x"); p.Labels[labelEgress] != "allow" {
		t.Errorf("allow_outbound: egress label %q", p.Labels[labelEgress])
	}
}

func TestValidateSpec(t *testing.T) {
	mod := func(f func(*executor.Spec)) executor.Spec { s := testSpec("v"); f(&s); return s }
	for name, tc := range map[string]struct {
		spec executor.Spec
		want string
	}{
		"ok":              {testSpec("v"), ""},
		"tag only":        {mod(func(s *executor.Spec) { s.Image = "nginx:1.27" }), "pinned by digest"},
		"short digest":    {mod(func(s *executor.Spec) { s.Image = "nginx@sha256:abc" }), "pinned by digest"},
		"no port":         {mod(func(s *executor.Spec) { s.ContainerPort = 0 }), "container_port"},
		"bad label":       {mod(func(s *executor.Spec) { s.Variant = "-bad-" }), "label value"},
		"long variant":    {mod(func(s *executor.Spec) { s.Variant = strings.Repeat("v", 64) }), "label value"},
		"bad template":    {mod(func(s *executor.Spec) { s.Command = []string{"{{.Nope"} }), "command[0]"},
		"unknown field":   {mod(func(s *executor.Spec) { s.Command = []string{"{{.Self}}"} }), "command[0]"},
		"bad env":         {mod(func(s *executor.Spec) { s.Env = map[string]string{"A=B": "x"} }), "env name"},
		"relative health": {mod(func(s *executor.Spec) { s.HealthPath = "healthz" }), "health_path"},
	} {
		t.Run(name, func(t *testing.T) {
			err := validateSpec(tc.spec)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
		})
	}
}

func TestPodNameFitsDNSLabel(t *testing.T) {
	for _, v := range []string{"a", "UPPER_case.v2", strings.Repeat("x", 63), "___"} {
		n := podName("pool-with-a-long-name-thirty", v, "0123456789")
		if len(n) > 63 || !strings.HasSuffix(n, "-0123456789") || strings.Contains(n, "--") || nonDNS.MatchString(n) {
			t.Errorf("podName(%q) = %q", v, n)
		}
	}
}

func TestReasonLabel(t *testing.T) {
	for in, want := range map[string]string{
		"dissent":                     "dissent",
		"engine: exploit seen (CVE)":  "engine_exploit_seen_CVE",
		"":                            "unspecified",
		"___":                         "unspecified",
		strings.Repeat("é", 40) + "x": "x",
	} {
		if got := reasonLabel(in); got != want {
			t.Errorf("reasonLabel(%q) = %q, want %q", in, got, want)
		}
	}
	if got := reasonLabel(strings.Repeat("a", 100)); len(got) != 63 {
		t.Errorf("long reason: %d characters", len(got))
	}
}
