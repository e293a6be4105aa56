package docker

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// multiarch is Debian's library directory name per GOARCH (lib/<triplet>).
var multiarch = map[string]string{
	"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu",
	"arm": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu",
}

// maxLibraries bounds the closure of one binary's shared libraries.
const maxLibraries = 512

// sharedLibraries returns the absolute host paths of the ELF interpreter of the binary at
// bin and of every shared library it needs, transitively, as the dynamic loader would find
// them without a cache: each object's DT_RUNPATH (or DT_RPATH, with $ORIGIN), then the
// host's multiarch and plain library directories. A library found nowhere is an error.
func sharedLibraries(bin string) ([]string, error) {
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("binary %s: not a readable ELF executable: %w", bin, err)
	}
	defer f.Close()
	class, machine := f.Class, f.Machine
	var out []string
	interp := ""
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return nil, fmt.Errorf("binary %s: interpreter: %w", bin, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	if interp == "" {
		return nil, nil // static: nothing to bring along
	}
	if !filepath.IsAbs(interp) {
		return nil, fmt.Errorf("binary %s: interpreter %q is not an absolute path", bin, interp)
	}
	out = append(out, interp)
	var system []string
	if t := multiarch[runtime.GOARCH]; t != "" {
		system = append(system, "/lib/"+t, "/usr/lib/"+t)
	}
	system = append(system, filepath.Dir(interp), "/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib")

	seen := map[string]bool{interp: true}
	queue := []string{bin}
	for len(queue) > 0 {
		obj := queue[0]
		queue = queue[1:]
		needed, dirs, err := dynamicOf(obj)
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, system...)
		for _, name := range needed {
			lib, err := findLibrary(name, dirs, class, machine)
			if err != nil {
				return nil, fmt.Errorf("binary %s: %s (needed by %s): %w", bin, name, obj, err)
			}
			if seen[lib] {
				continue
			}
			seen[lib] = true
			if out = append(out, lib); len(out) > maxLibraries {
				return nil, fmt.Errorf("binary %s: more than %d shared libraries", bin, maxLibraries)
			}
			queue = append(queue, lib)
		}
	}
	slices.Sort(out)
	return out, nil
}

// dynamicOf reads an object's DT_NEEDED names and its RUNPATH (or RPATH) directories.
func dynamicOf(path string) (needed, dirs []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if needed, err = f.ImportedLibraries(); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	run, _ := f.DynString(elf.DT_RUNPATH)
	if len(run) == 0 {
		run, _ = f.DynString(elf.DT_RPATH)
	}
	origin := filepath.Dir(path)
	for _, r := range run {
		for _, d := range strings.Split(r, ":") {
			d = strings.ReplaceAll(strings.ReplaceAll(d, "${ORIGIN}", origin), "$ORIGIN", origin)
			if filepath.IsAbs(d) {
				dirs = append(dirs, filepath.Clean(d))
			}
		}
	}
	return needed, dirs, nil
}

// findLibrary is the first file called name in dirs that is an ELF object of the class and
// machine wanted (a 32-bit libc beside the 64-bit one is skipped, as the loader skips it).
func findLibrary(name string, dirs []string, class elf.Class, machine elf.Machine) (string, error) {
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("a needed library with a path is not supported")
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		f, err := elf.Open(p)
		if err != nil {
			continue // absent, not ELF (a linker script) or unreadable: the loader skips it too
		}
		ok := f.Class == class && f.Machine == machine
		f.Close()
		if ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("not found in %s", strings.Join(dirs, ", "))
}
