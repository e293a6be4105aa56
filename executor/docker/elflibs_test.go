package docker

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/proteus-defense/proteus/executor"
)

// A dynamically linked program's image needs its loader and libraries: found from its ELF
// headers as the loader would, every one an absolute path, libc among them.
func TestSharedLibraries(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	libs, err := sharedLibraries(sh)
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 {
		t.Skipf("%s is statically linked here", sh)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "/libc.so") }) ||
		!slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "/ld-") }) {
		t.Errorf("libraries of %s: %v, want libc and the loader", sh, libs)
	}
	if _, err := sharedLibraries("/nonexistent"); err == nil {
		t.Error("a missing binary gave no error")
	}
}

// Rendered files stay inside FilesDir, and their templates are checked with the container's
// fields before anything starts ({{.Self}} is the process driver's only).
func TestValidateSpecFiles(t *testing.T) {
	pin := "sha256:" + strings.Repeat("a", 64)
	base := executor.Spec{Variant: "nsd", Driver: "docker", Image: pin, ContainerPort: 53,
		Command: []string{"-c", "{{.Files}}/nsd.conf"}, HealthQuery: &executor.DNSQuery{Name: "www.example.org.", Type: 1}}
	for _, tc := range []struct {
		files map[string]string
		want  string
	}{
		{map[string]string{"nsd.conf": "ip-address: {{.IP}}@{{.Port}}\nzonesdir: {{.Files}}\npid: {{.State}}/x\n"}, ""},
		{map[string]string{"../etc/passwd": "x"}, "clean relative path"},
		{map[string]string{"/etc/passwd": "x"}, "clean relative path"},
		{map[string]string{"nsd.conf": "{{.Self}}"}, "Self"},
		{map[string]string{"nsd.conf": "{{.Port"}, "files[nsd.conf]"},
	} {
		s := base
		s.Files = tc.files
		err := validateSpec(s)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("files %v: %v, want %q", tc.files, err, tc.want)
		}
	}
}
