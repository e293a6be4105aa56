package kubernetes

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/proteus-defense/proteus/executor"
)

var digestPin = regexp.MustCompile(`^[^@\s]+@(sha256:[0-9a-f]{64})$`)

// ValidateSpec checks a spec without contacting the API server: the image pinned by digest,
// the variant usable as a label value, a container port, command templates that parse.
func (d *Driver) ValidateSpec(spec executor.Spec) error { return validateSpec(spec) }

func validateSpec(spec executor.Spec) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("executor/kubernetes: validate %s: %w: %s", spec.Variant, ErrInvalidSpec, fmt.Sprintf(format, a...))
	}
	if errs := validation.IsValidLabelValue(spec.Variant); spec.Variant == "" || len(errs) > 0 {
		return bad("variant name must be a label value: %s", strings.Join(errs, "; "))
	}
	if !digestPin.MatchString(spec.Image) {
		return bad("image %q: must be pinned by digest, NAME@sha256:<64 hex>", spec.Image)
	}
	if spec.ContainerPort < 1 || spec.ContainerPort > 65535 {
		return bad("container_port %d: want 1..65535", spec.ContainerPort)
	}
	if spec.HealthPath != "" && !strings.HasPrefix(spec.HealthPath, "/") {
		return bad("health_path %q: must start with /", spec.HealthPath)
	}
	if _, err := renderArgs(spec); err != nil {
		return bad("%v", err)
	}
	for k := range spec.Env {
		if errs := validation.IsEnvVarName(k); len(errs) > 0 {
			return bad("env name %q: %s", k, strings.Join(errs, "; "))
		}
	}
	return nil
}

// renderArgs fills the command templates: {{.Port}} is the container port, {{.Addr}}
// 0.0.0.0:Port, {{.Dir}} the writable scratch directory /tmp. They become the container's
// args (the image's entrypoint is kept, as Docker's CMD override does).
func renderArgs(spec executor.Spec) ([]string, error) {
	data := struct {
		Port      int
		Addr, Dir string
	}{spec.ContainerPort, "0.0.0.0:" + strconv.Itoa(spec.ContainerPort), "/tmp"}
	out := make([]string, len(spec.Command))
	for i, arg := range spec.Command {
		var b strings.Builder
		t, err := template.New("arg").Option("missingkey=error").Parse(arg)
		if err == nil {
			err = t.Execute(&b, data)
		}
		if err != nil {
			return nil, fmt.Errorf("command[%d]: %w", i, err)
		}
		out[i] = b.String()
	}
	return out, nil
}

func digestOf(image string) string {
	if m := digestPin.FindStringSubmatch(image); m != nil {
		return m[1]
	}
	return ""
}

func decodeTraits(s string) map[string]string {
	var t map[string]string
	if s != "" && json.Unmarshal([]byte(s), &t) == nil {
		return t
	}
	return nil
}

// podName is proteus-<pool>-<variant>-<id>, the variant reduced to what a DNS label allows
// and cut so the whole stays within 63 characters.
func podName(pool, variant, id string) string {
	v := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(variant), "-"), "-")
	if room := 63 - len("proteus-"+pool+"--"+id); len(v) > room {
		v = strings.TrimRight(v[:max(room, 0)], "-")
	}
	if v == "" {
		return "proteus-" + pool + "-" + id
	}
	return "proteus-" + pool + "-" + v + "-" + id
}

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// podFor builds the hardened pod of executor id.
func (d *Driver) podFor(spec executor.Spec, id string) (*corev1.Pod, error) {
	args, err := renderArgs(spec)
	if err != nil {
		return nil, err
	}
	traits, _ := json.Marshal(spec.Traits)
	env := make([]corev1.EnvVar, 0, len(spec.Env))
	for k, v := range spec.Env {
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}
	sort.Slice(env, func(i, j int) bool { return env[i].Name < env[j].Name })
	health := spec.HealthPath
	if health == "" {
		health = "/"
	}
	f, t := false, true
	uid := d.opts.RunAsUser
	grace := int64(d.opts.StopGrace / time.Second)
	mem := resource.NewQuantity(d.opts.Memory, resource.BinarySI)
	cpu := resource.NewMilliQuantity(int64(d.opts.CPU*1000), resource.DecimalSI)
	tmp := resource.MustParse("64Mi")
	seccomp := &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}
	egress := "allow"
	if !spec.AllowOutbound {
		egress = "deny"
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      podName(d.opts.Pool, spec.Variant, id),
			Namespace: d.opts.Namespace,
			Labels: map[string]string{
				LabelManagedBy: ManagedBy, LabelPool: d.opts.Pool, LabelVariant: spec.Variant,
				LabelExecutor: id, LabelRole: RoleExecutor, labelEgress: egress,
			},
			Annotations: map[string]string{AnnotImage: spec.Image, AnnotPort: strconv.Itoa(spec.ContainerPort), AnnotTraits: string(traits)},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever, // a crashed executor is replaced from its image, never restarted in place
			AutomountServiceAccountToken:  &f,
			EnableServiceLinks:            &f,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid, SeccompProfile: seccomp,
			},
			Containers: []corev1.Container{{
				Name:            containerName,
				Image:           spec.Image,
				ImagePullPolicy: corev1.PullIfNotPresent, // pinned by digest: the content cannot change
				Args:            args,
				Env:             env,
				Ports:           []corev1.ContainerPort{{Name: "service", ContainerPort: int32(spec.ContainerPort), Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: health, Port: intstr.FromInt32(int32(spec.ContainerPort))}},
					PeriodSeconds: 1, FailureThreshold: 3,
				},
				Resources: corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: *mem, corev1.ResourceCPU: *cpu, corev1.ResourceEphemeralStorage: tmp},
					Requests: corev1.ResourceList{corev1.ResourceMemory: *mem, corev1.ResourceCPU: *resource.NewMilliQuantity(max(cpu.MilliValue()/10, 10), resource.DecimalSI)},
				},
				SecurityContext: &corev1.SecurityContext{
					ReadOnlyRootFilesystem:   &t,
					RunAsNonRoot:             &t,
					AllowPrivilegeEscalation: &f,
					Privileged:               &f,
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           seccomp,
				},
				VolumeMounts:             []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			}},
			Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: &tmp}}}},
		},
	}
	if o := d.opts.Owner; o != nil {
		ref := *o
		ref.Controller, ref.BlockOwnerDeletion = nil, nil // the agent does not control its executors' lives through the GC
		p.OwnerReferences = []metav1.OwnerReference{ref}
	}
	return p, nil
}

// isolationSummary says how the pod is confined, from its spec as the API server stored it.
func isolationSummary(p *corev1.Pod) string {
	var parts []string
	if len(p.Spec.Containers) == 0 {
		return "unknown"
	}
	c := p.Spec.Containers[0]
	sc := c.SecurityContext
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		parts = append(parts, "read-only root")
	}
	if ps := p.Spec.SecurityContext; ps != nil && ps.RunAsUser != nil {
		parts = append(parts, fmt.Sprintf("uid %d", *ps.RunAsUser))
	}
	if sc != nil && sc.Capabilities != nil && len(sc.Capabilities.Drop) > 0 {
		parts = append(parts, "caps dropped")
	}
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		parts = append(parts, "no_new_privs")
	}
	if sc != nil && sc.SeccompProfile != nil {
		parts = append(parts, "seccomp "+string(sc.SeccompProfile.Type))
	}
	if a := p.Spec.AutomountServiceAccountToken; a != nil && !*a {
		parts = append(parts, "no service-account token")
	}
	if m, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		parts = append(parts, "memory "+m.String())
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		parts = append(parts, "cpu "+q.String())
	}
	if p.Labels[labelEgress] == "deny" {
		parts = append(parts, "egress denied (NetworkPolicy)")
	}
	return "pod: " + strings.Join(parts, ", ")
}
