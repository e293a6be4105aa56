package process

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// ManifestName is the file in an image directory that lists the SHA-256 of every other file,
// in the format of `sha256sum` ("<hex>  <relative path>" per line).
const ManifestName = "MANIFEST.sha256"

// maxManifest bounds the manifest size read at every start.
const maxManifest = 4 << 20

// manifestEntry is one line of a manifest.
type manifestEntry struct {
	sum  [sha256.Size]byte
	path string // slash-separated, relative, clean
}

// WriteManifest hashes every regular file below dir (except the manifest itself) and writes
// dir/MANIFEST.sha256. It returns the image digest ("sha256:" + hash of the manifest). Symbolic
// links and other non-regular files are refused: an image is plain files.
func WriteManifest(dir string) (string, error) {
	var entries []manifestEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			return nil
		case rel == ManifestName:
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", rel)
		}
		sum, err := hashFile(p)
		if err != nil {
			return err
		}
		entries = append(entries, manifestEntry{sum: sum, path: rel})
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("executor/process: write manifest: %w", err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	var b bytes.Buffer
	for _, e := range entries {
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(e.sum[:]), e.path)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestName), b.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("executor/process: write manifest: %w", err)
	}
	return digestOf(b.Bytes()), nil
}

func digestOf(manifest []byte) string {
	s := sha256.Sum256(manifest)
	return "sha256:" + hex.EncodeToString(s[:])
}

func hashFile(p string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// errManifest marks a manifest that cannot be parsed; it is reported as a tampered image.
var errManifest = errors.New("bad manifest")

// parseManifest reads manifest lines. It accepts sha256sum's binary marker ("<hex> *path")
// and "./" prefixes, and refuses paths that leave the image.
func parseManifest(data []byte) ([]manifestEntry, error) {
	var out []manifestEntry
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sumHex, rest, ok := strings.Cut(line, " ")
		if !ok || len(sumHex) != 2*sha256.Size || len(rest) < 2 || (rest[0] != ' ' && rest[0] != '*') {
			return nil, fmt.Errorf("%w: line %d: want \"<sha256>  <path>\"", errManifest, n)
		}
		var e manifestEntry
		if _, err := hex.Decode(e.sum[:], []byte(sumHex)); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errManifest, n, err)
		}
		p := strings.TrimPrefix(rest[1:], "./")
		if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") || p == ManifestName {
			return nil, fmt.Errorf("%w: line %d: path %q must be clean and relative", errManifest, n, p)
		}
		if seen[p] {
			return nil, fmt.Errorf("%w: line %d: %s listed twice", errManifest, n, p)
		}
		seen[p] = true
		e.path = p
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", errManifest, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no files listed", errManifest)
	}
	return out, nil
}

// tamperError describes why an image was refused; it wraps executor.ErrTamperedImage in Start.
type tamperError struct{ detail string }

func (e *tamperError) Error() string { return e.detail }

// copyVerified copies the image at src into dst, hashing every file while it is copied, so the
// bytes that run are the bytes that were checked. It returns the image digest, or a
// *tamperError when a file is missing, altered, unlisted or not a regular file.
func copyVerified(src, dst string) (string, error) {
	mf, err := os.Open(filepath.Join(src, ManifestName))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", &tamperError{detail: "no " + ManifestName + " in " + src}
		}
		return "", err
	}
	data, err := io.ReadAll(io.LimitReader(mf, maxManifest+1))
	mf.Close()
	if err != nil {
		return "", err
	}
	if len(data) > maxManifest {
		return "", &tamperError{detail: "manifest larger than 4 MiB"}
	}
	entries, err := parseManifest(data)
	if err != nil {
		return "", &tamperError{detail: err.Error()}
	}
	listed := make(map[string]bool, len(entries))
	for _, e := range entries {
		listed[e.path] = true
	}
	// Every file present must be listed: an added file is tampering too.
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() || rel == ManifestName {
			return nil
		}
		if !listed[rel] {
			return &tamperError{detail: "unlisted file " + rel}
		}
		if !d.Type().IsRegular() {
			return &tamperError{detail: rel + " is not a regular file"}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		if err := copyOne(src, dst, e); err != nil {
			return "", err
		}
	}
	return digestOf(data), nil
}

func copyOne(src, dst string, e manifestEntry) error {
	from := filepath.Join(src, filepath.FromSlash(e.path))
	st, err := os.Lstat(from)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &tamperError{detail: "missing file " + e.path}
		}
		return err
	}
	if !st.Mode().IsRegular() {
		return &tamperError{detail: e.path + " is not a regular file"}
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	to := filepath.Join(dst, filepath.FromSlash(e.path))
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, st.Mode().Perm()&0o755|0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(out, h), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if !bytes.Equal(h.Sum(nil), e.sum[:]) {
		return &tamperError{detail: "sha256 mismatch for " + e.path}
	}
	return nil
}
