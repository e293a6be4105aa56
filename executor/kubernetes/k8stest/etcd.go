package k8stest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// CompactEtcd compacts etcd's history up to its current revision, as the API server's own
// compactor does every five minutes, and returns that revision. Watches that resume from an
// older resource version afterwards are answered 410 Gone (Expired) where the API server
// serves them from etcd. It talks to etcd's JSON gateway (the v3 KV API over HTTP), so the
// project needs no etcd client.
func (c *Cluster) CompactEtcd() int64 {
	c.t.Helper()
	var rng struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// A range over one key returns the store's current revision in its header.
	if err := c.etcdCall("/v3/kv/range", map[string]any{"key": base64.StdEncoding.EncodeToString([]byte("/"))}, &rng); err != nil {
		c.t.Fatalf("k8stest: etcd revision: %v", err)
	}
	rev, err := strconv.ParseInt(rng.Header.Revision, 10, 64)
	if err != nil || rev <= 0 {
		c.t.Fatalf("k8stest: etcd revision %q: %v", rng.Header.Revision, err)
	}
	if err := c.etcdCall("/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil); err != nil {
		c.t.Fatalf("k8stest: compact etcd at revision %d: %v", rev, err)
	}
	return rev
}

// etcdCall posts req as JSON to one of etcd's gateway paths and decodes the answer into out.
func (c *Cluster) etcdCall(path string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.etcdURL+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
