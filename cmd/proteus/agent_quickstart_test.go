package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/proteus-defense/proteus/config"
	"github.com/proteus-defense/proteus/engine/agent"
	"github.com/proteus-defense/proteus/executor"
	"github.com/proteus-defense/proteus/executor/process"
)

// Every variant of the quickstart serves the same bytes for the same path, nginx and lighttpd
// included (each skipped only when the program is not installed).
func TestQuickstartVariantsServeTheSameSite(t *testing.T) {
	cfg, err := config.Load("../../examples/quickstart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.Listen != "127.0.0.1:8080" || cfg.API.Listen != "127.0.0.1:9090" {
		t.Fatalf("quickstart addresses %s %s", cfg.Gateway.Listen, cfg.API.Listen)
	}
	data := t.TempDir()
	specs, err := agent.Specs(cfg, "../../examples/quickstart.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var usable []executor.Spec
	for _, s := range specs {
		if s.Variant == "nginx" || s.Variant == "lighttpd" {
			if _, err := exec.LookPath(s.Variant); err != nil {
				t.Logf("skipping variant %s: not installed (.ci/run installs it): %v", s.Variant, err)
				continue
			}
		}
		usable = append(usable, s)
	}
	d, err := process.New(executor.Env{DataDir: data})
	if err != nil {
		t.Fatal(err)
	}
	pool, err := executor.NewPool(executor.PoolConfig{Variants: usable, Desired: len(usable), StartTimeout: 30 * time.Second},
		map[string]executor.Driver{process.ID: d}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pool.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer pool.Close(context.Background())
	ref := map[string]string{}
	for _, inst := range pool.Healthy() {
		for _, p := range []string{"/", "/about.html", "/style.css", "/api/items", "/api/item/2", "/healthz"} {
			resp, err := http.Get("http://" + inst.Address + p)
			if err != nil {
				t.Fatalf("%s %s: %v", inst.Variant, p, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s %s: status %d", inst.Variant, p, resp.StatusCode)
			}
			if r, ok := ref[p]; ok && r != string(b) {
				t.Errorf("%s %s differs from the other variants", inst.Variant, p)
			}
			ref[p] = string(b)
		}
	}
	if got := len(pool.Healthy()); got != len(usable) {
		t.Fatalf("%d of %d variants healthy", got, len(usable))
	}
}
