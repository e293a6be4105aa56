package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"

	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/executor"
)

// Pin is an image reference pinned by digest, as Spec.Image carries it.
type Pin struct {
	// Name is the repository with optional tag ("proteus-demo:v1"), empty for a bare ID pin.
	Name string
	// Digest is "sha256:" followed by 64 lowercase hex digits: a registry manifest digest
	// (name@sha256:...) or, for images that never went through a registry, the image ID.
	Digest string
}

// String gives the pin back in the form ParsePin reads.
func (p Pin) String() string {
	if p.Name == "" {
		return p.Digest
	}
	return p.Name + "@" + p.Digest
}

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ParsePin reads "name[:tag]@sha256:<64 hex>" or a bare image ID "sha256:<64 hex>". A tag
// alone, a short ID or any other digest algorithm is refused: a name without a digest can
// be moved to other content after it was reviewed.
func ParsePin(s string) (Pin, error) {
	if s == "" {
		return Pin{}, errors.New("empty image reference; pin it as name@sha256:<digest> or sha256:<image id>")
	}
	if digestRE.MatchString(s) {
		return Pin{Digest: s}, nil
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return Pin{}, fmt.Errorf("image %q is not pinned by digest; use name@sha256:<digest> or sha256:<image id>", s)
	}
	name, dg := s[:at], s[at+1:]
	if !digestRE.MatchString(dg) {
		return Pin{}, fmt.Errorf("image %q: digest %q is not sha256:<64 lowercase hex>", s, dg)
	}
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return Pin{}, fmt.Errorf("image %q: name %q: %w", s, name, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return Pin{}, fmt.Errorf("image %q: name %q carries a digest of its own", s, name)
	}
	return Pin{Name: name, Digest: dg}, nil
}

// verifyImage checks the local image against its pin, then its content against its ID, and
// returns the image ID to run.
//
//   - A bare ID pin must name an image whose ID is exactly that digest.
//   - name@digest is accepted when the engine holds that registry digest for the name
//     (RepoDigests), or when the image the name currently points at has that ID. A name that
//     now points at another image, with no image matching the digest, is tampering.
//   - Unless Options.SkipContentCheck, the image is exported and re-hashed (at most once per
//     Options.VerifyInterval per ID): layers changed on disk are tampering too.
func (d *Driver) verifyImage(ctx context.Context, variant string, pin Pin) (string, error) {
	id, err := d.resolvePin(ctx, variant, pin)
	if err != nil {
		return "", err
	}
	if err := d.verifyContent(ctx, id); err != nil {
		if errors.Is(err, errContent) {
			return "", d.tampered(variant, pin, id, err.Error())
		}
		return "", d.wrap("start", variant, fmt.Errorf("check image content %s: %w", shortID(id), err))
	}
	return id, nil
}

// hasRepoDigest tells whether one of the engine's repo digests (familiar or fully qualified
// names, e.g. "nginx@sha256:..." or "docker.io/library/nginx@sha256:...") is the pin's
// repository with the pin's digest. The pin's tag, if any, plays no part.
func hasRepoDigest(repoDigests []string, pin Pin) bool {
	want, err := reference.ParseNormalizedNamed(pin.Name)
	if err != nil {
		return false
	}
	for _, rd := range repoDigests {
		got, err := reference.ParseNormalizedNamed(rd)
		if err != nil {
			continue
		}
		if c, ok := got.(reference.Canonical); ok && got.Name() == want.Name() && c.Digest().String() == pin.Digest {
			return true
		}
	}
	return false
}

// resolvePin finds the image ID the pin stands for, refusing a name that moved.
func (d *Driver) resolvePin(ctx context.Context, variant string, pin Pin) (string, error) {
	ictx, cancel := d.opCtx(ctx)
	defer cancel()
	if pin.Name == "" {
		img, err := d.cli.ImageInspect(ictx, pin.Digest)
		if err != nil {
			return "", d.wrap("start", variant, fmt.Errorf("inspect image %s: %w", pin, err))
		}
		if img.ID != pin.Digest {
			return "", d.tampered(variant, pin, img.ID, "the reference resolves to another image")
		}
		return img.ID, nil
	}
	// Registry digest first: it is what a pulled image is pinned by.
	img, err := d.cli.ImageInspect(ictx, pin.String())
	if err == nil {
		if img.ID == pin.Digest || hasRepoDigest(img.RepoDigests, pin) {
			return img.ID, nil
		}
		return "", d.tampered(variant, pin, img.ID, "the reference resolves to another image")
	}
	if !cerrdefs.IsNotFound(err) {
		return "", d.wrap("start", variant, fmt.Errorf("inspect image %s: %w", pin, err))
	}
	// A locally built image: the name must still point at the pinned ID.
	img, err = d.cli.ImageInspect(ictx, pin.Name)
	if err != nil {
		return "", d.wrap("start", variant, fmt.Errorf("inspect image %s: %w", pin.Name, err))
	}
	if img.ID != pin.Digest {
		return "", d.tampered(variant, pin, img.ID, "the reference resolves to another image")
	}
	return img.ID, nil
}

func (d *Driver) tampered(variant string, pin Pin, found, reason string) error {
	d.log.Error("image does not match its pin; refusing to start", "variant", variant, "pinned", pin.String(), "found", found, "reason", reason)
	d.bus.Publish(bus.Event{
		Kind:    executor.EventTamperedImage,
		Source:  "executor/docker",
		Subject: variant,
		Attrs:   map[string]any{"pinned": pin.String(), "found": found, "reason": reason, "driver": "docker"},
	})
	return fmt.Errorf("executor/docker: start %s: %w: %s: %s (image %s)", variant, executor.ErrTamperedImage, pin, reason, found)
}

// BuildScratchImage builds a FROM-scratch image holding one statically linked binary as
// /<basename>, run as uid/gid 65534 with ENTRYPOINT ["/<basename>"] and CMD cmd, tags it
// tag (e.g. "proteus-demo:v1") and returns the pinned reference "tag@sha256:<image id>"
// to put in Spec.Image. See BuildImage to add files (a site to serve, say).
func BuildScratchImage(ctx context.Context, cli client.ImageAPIClient, binaryPath, tag string, cmd ...string) (string, error) {
	return BuildImage(ctx, cli, ScratchImage{Tag: tag, Binary: binaryPath, Cmd: cmd})
}

// ScratchImage describes a FROM-scratch image for BuildImage.
type ScratchImage struct {
	Tag    string   // repository[:tag] to give the image, e.g. "proteus-demo:v1"
	Binary string   // host path of a statically linked executable, copied to /<basename>
	Cmd    []string // default arguments (CMD); Spec.Command overrides them
	// Files maps an absolute path in the image to a host file or directory, copied
	// recursively, owned by root and read-only (0444 files, 0555 directories).
	Files map[string]string
	// Libraries lets Binary be dynamically linked (a server installed from the host's
	// distribution, such as Debian's nsd or unbound): its ELF interpreter and every shared
	// library it needs, transitively (DT_NEEDED, found in its RUNPATH and this host's
	// library directories), are copied into the image at the paths they have here. Libraries
	// a program loads by name at run time (dlopen: plugins, NSS modules) are not found that
	// way: add them with Files.
	Libraries bool
}

// BuildImage builds im through the engine's build API with an in-memory tar context and
// returns "tag@sha256:<image id>". The image runs as uid/gid 65534. A dynamically linked
// binary is refused (scratch has no libc or loader: build it with CGO_ENABLED=0) unless
// im.Libraries brings its loader and libraries along.
func BuildImage(ctx context.Context, cli client.ImageAPIClient, im ScratchImage) (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("executor/docker: build image %s: %w", im.Tag, err)
	}
	named, err := reference.ParseNormalizedNamed(im.Tag)
	if err != nil {
		return fail(fmt.Errorf("tag: %w", err))
	}
	if _, ok := named.(reference.Digested); ok {
		return fail(errors.New("tag must not carry a digest"))
	}
	var libs []string
	if im.Libraries {
		if libs, err = sharedLibraries(im.Binary); err != nil {
			return fail(err)
		}
	} else if err := checkStatic(im.Binary); err != nil {
		return fail(err)
	}
	base := filepath.Base(im.Binary)
	if strings.ContainsAny(base, " \"\\") {
		return fail(fmt.Errorf("binary name %q cannot be used as a file name in the image", base))
	}
	entry, _ := json.Marshal([]string{"/" + base})
	cmd := im.Cmd
	if cmd == nil {
		cmd = []string{}
	}
	cmdJSON, _ := json.Marshal(cmd)
	dockerfile := fmt.Sprintf("FROM scratch\nCOPY rootfs/ /\nUSER 65534:65534\nENTRYPOINT %s\nCMD %s\nLABEL %s=%s\n",
		entry, cmdJSON, LabelOwner, OwnerValue)

	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	if err := tarFile(tw, "Dockerfile", []byte(dockerfile), 0o644); err != nil {
		return fail(err)
	}
	bin, err := os.ReadFile(im.Binary)
	if err != nil {
		return fail(err)
	}
	if err := tarFile(tw, "rootfs/"+base, bin, 0o555); err != nil {
		return fail(err)
	}
	for _, lib := range libs {
		data, err := os.ReadFile(lib)
		if err != nil {
			return fail(err)
		}
		if err := tarFile(tw, "rootfs"+lib, data, 0o555); err != nil {
			return fail(err)
		}
	}
	for dest, src := range im.Files {
		if !strings.HasPrefix(dest, "/") || strings.Contains(dest, "..") {
			return fail(fmt.Errorf("file destination %q: want an absolute path without \"..\" elements", dest))
		}
		if err := tarTree(tw, "rootfs"+filepath.Clean(dest), src); err != nil {
			return fail(err)
		}
	}
	if err := tw.Close(); err != nil {
		return fail(err)
	}

	resp, err := cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{
		Tags:        []string{im.Tag},
		Remove:      true,
		ForceRemove: true,
		Dockerfile:  "Dockerfile",
	})
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	id, err := readBuildStream(resp.Body)
	if err != nil {
		return fail(err)
	}
	if id == "" {
		// Old engines do not send the aux ID message; ask for what the tag now names.
		img, err := cli.ImageInspect(ctx, im.Tag)
		if err != nil {
			return fail(fmt.Errorf("inspect built image: %w", err))
		}
		id = img.ID
	}
	if !digestRE.MatchString(id) {
		return fail(fmt.Errorf("engine returned image ID %q, not sha256:<64 hex>", id))
	}
	return im.Tag + "@" + id, nil
}

func tarFile(tw *tar.Writer, name string, data []byte, mode int64) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

// tarTree adds the host file or directory src under name, following no symlinks.
func tarTree(tw *tar.Writer, name, src string) error {
	return filepath.WalkDir(src, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.ToSlash(filepath.Join(name, rel))
		switch {
		case de.IsDir():
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: target + "/", Mode: 0o555})
		case de.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return tarFile(tw, target, data, 0o444)
		default:
			return fmt.Errorf("%s: only regular files and directories can be copied", path)
		}
	})
}

// readBuildStream consumes the build's JSON message stream and returns the image ID from
// the aux message, or the first error the engine reported.
func readBuildStream(r io.Reader) (string, error) {
	dec := json.NewDecoder(r)
	var id string
	for {
		var msg struct {
			Stream      string `json:"stream"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
			Aux json.RawMessage `json:"aux"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return id, nil
			}
			return "", fmt.Errorf("read build output: %w", err)
		}
		if msg.Error != "" {
			return "", fmt.Errorf("engine: %s", strings.TrimSpace(msg.Error))
		}
		if len(msg.Aux) > 0 {
			var aux struct {
				ID string `json:"ID"`
			}
			if json.Unmarshal(msg.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
	}
}

// checkStatic refuses binaries that need a dynamic loader, which a scratch image lacks.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary %s: not a readable ELF executable: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("binary %s is dynamically linked; build it with CGO_ENABLED=0", path)
		}
	}
	return nil
}
