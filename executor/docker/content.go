package docker

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"
)

// contentCache remembers when each image ID last passed the content check.
type contentCache struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func (c *contentCache) fresh(id string, interval time.Duration, now time.Time) bool {
	if interval < 0 {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.seen[id]
	return ok && now.Sub(t) < interval
}

func (c *contentCache) mark(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]time.Time{}
	}
	c.seen[id] = now
}

// errContent is wrapped by every content check failure.
var errContent = errors.New("image content does not match its ID")

// verifyContent exports the image from the engine (the save API) and checks, from the bytes
// themselves, that the configuration hashes to the image ID and that every layer hashes to
// the diff ID the configuration lists. Files changed in the engine's layer store after the
// image was built or pulled show up as a mismatch (or as an export the engine aborts).
// Errors reaching the engine are returned as they are; content problems wrap errContent.
func (d *Driver) verifyContent(ctx context.Context, imageID string) error {
	if d.opts.SkipContentCheck || d.content.fresh(imageID, d.opts.VerifyInterval, time.Now()) {
		return nil
	}
	vctx, cancel := context.WithTimeout(ctx, d.opts.OpTimeout*4)
	defer cancel()
	rc, err := d.cli.ImageSave(vctx, []string{imageID})
	if err != nil {
		if engineFoundCorruption(err) {
			return fmt.Errorf("%w: the engine refused to export %s: %v", errContent, shortID(imageID), err)
		}
		return err
	}
	defer rc.Close()
	if err := checkSavedImage(rc, imageID); err != nil {
		if vctx.Err() != nil {
			return fmt.Errorf("export image %s: %w", shortID(imageID), vctx.Err())
		}
		return err
	}
	d.content.mark(imageID, time.Now())
	return nil
}

// engineFoundCorruption tells the engine's own integrity failures (its tar-split checksums
// and layer digest checks, hit while exporting) from other errors.
func engineFoundCorruption(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"integrity checksum failed", "failed to verify layer", "layer verification failed", "digest mismatch"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkSavedImage reads a `docker save` archive (the legacy layout with manifest.json and
// <id>/layer.tar, or the OCI layout with blobs/sha256/...) and checks it against imageID.
func checkSavedImage(r io.Reader, imageID string) error {
	const keepMax = 1 << 20 // small files (manifest, config) are kept to be parsed
	digests := map[string]string{}
	kept := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: export of %s is unreadable (the engine may have aborted it): %v", errContent, shortID(imageID), err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name := path.Clean(h.Name)
		sum := sha256.New()
		if h.Size <= keepMax {
			buf := &limitedBuffer{max: keepMax}
			if _, err := io.Copy(io.MultiWriter(sum, buf), tr); err != nil {
				return fmt.Errorf("%w: export of %s is truncated at %s: %v", errContent, shortID(imageID), name, err)
			}
			kept[name] = buf.b
		} else if _, err := io.Copy(sum, tr); err != nil {
			return fmt.Errorf("%w: export of %s is truncated at %s: %v", errContent, shortID(imageID), name, err)
		}
		digests[name] = "sha256:" + hex.EncodeToString(sum.Sum(nil))
	}
	var manifest []struct {
		Config string
		Layers []string
	}
	raw, ok := kept["manifest.json"]
	if !ok {
		return fmt.Errorf("%w: export of %s has no manifest.json (incomplete)", errContent, shortID(imageID))
	}
	if err := json.Unmarshal(raw, &manifest); err != nil || len(manifest) != 1 {
		return fmt.Errorf("%w: export of %s: manifest.json unreadable or not one image", errContent, shortID(imageID))
	}
	m := manifest[0]
	cfgName := path.Clean(m.Config)
	if got := digests[cfgName]; got != imageID {
		return fmt.Errorf("%w: configuration of %s hashes to %q", errContent, shortID(imageID), got)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(kept[cfgName], &cfg); err != nil {
		return fmt.Errorf("%w: configuration of %s unreadable: %v", errContent, shortID(imageID), err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("%w: %s lists %d layers, the export has %d", errContent, shortID(imageID), len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	for i, l := range m.Layers {
		if got, want := digests[path.Clean(l)], cfg.RootFS.DiffIDs[i]; got != want {
			return fmt.Errorf("%w: layer %d of %s hashes to %q, want %s", errContent, i, shortID(imageID), got, want)
		}
	}
	return nil
}

// limitedBuffer keeps at most max bytes.
type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
