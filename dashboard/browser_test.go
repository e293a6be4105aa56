package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/proteus-defense/proteus/api"
	"github.com/proteus-defense/proteus/bus"
	"github.com/proteus-defense/proteus/sensor/eve"
	"github.com/proteus-defense/proteus/store"
)

// chromium finds Debian's chromium (.ci/run installs it).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
	return ""
}

// TestBrowserShowsExecutorsDecisionsAndRunsNoMarkup drives headless Chromium through the
// one-time link to the dashboard: it must show the executors, a live event and the decision,
// and the decision's attacker-made markup (in its evidence, its countermeasure target and its
// game choice) must be shown as text and run nothing.
func TestBrowserShowsExecutorsDecisionsAndRunsNoMarkup(t *testing.T) {
	exe := chromium(t)
	e := setup(t)
	link := e.login(t, browser(t)) // spend one link in another client: it must not work in the browser
	l, err := e.client.LoginLink(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute) // generous: CI shares 2 cores
	defer cancelT()

	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	wait := func(sel string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
			t.Fatalf("waiting for %s: %v", sel, err)
		}
	}
	eval := func(js string) bool {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return v
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(link)); err != nil {
		t.Fatal(err)
	}
	if spent := text("body"); !strings.Contains(spent, "spent or expired") {
		t.Fatalf("a spent link in the browser shows %q", spent)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(l.URL)); err != nil {
		t.Fatal(err)
	}
	wait(`#executors tbody tr`)
	if url, err := chromedp.Run(ctx, chromedp.Location()); err != nil || strings.Contains(url, "code=") {
		t.Errorf("the browser stayed on the login URL %s (%v)", url, err)
	}
	execText := text(`#executors tbody`)
	for _, v := range []string{"go-nethttp", "go-raw", "127.0.0.1:"} {
		if !strings.Contains(execText, v) {
			t.Errorf("executors table %q lacks %s", execText, v)
		}
	}

	// Live feed: an event published on the bus shows up, as text.
	wait(`#stream.up`)
	e.bus.Publish(bus.Event{Kind: "gateway.dissent", Source: "gateway", Subject: "exec-1", Attrs: map[string]any{"path": hostile}})
	wait(`#feed li[data-kind="gateway.dissent"]`)
	if feed := text(`#feed`); !strings.Contains(feed, hostile) {
		t.Errorf("feed %q does not show the dissent's path as text", feed)
	}
	// Every kind is shown, not only those app.js names: the enclave's, and one that no code
	// emits today (a kind added tomorrow).
	for _, k := range []string{"enclave.decision", "enclave.rejected", "sensor.future-kind"} {
		e.bus.Publish(bus.Event{Kind: k, Source: "test", Subject: "s-" + k, Attrs: map[string]any{"note": hostile}})
		wait(`#feed li[data-kind="` + k + `"]`)
		if line := text(`#feed li[data-kind="` + k + `"]`); !strings.Contains(line, "s-"+k) || !strings.Contains(line, hostile) {
			t.Errorf("feed line of %s: %q", k, line)
		}
	}

	// The timeline and the top sources, drawn by the page's own script, and updated live when
	// a decision is announced.
	wait(`#timeline svg rect.bar-act`)
	wait(`#top-sources tbody tr[data-source="192.0.2.7"]`)
	if !eval(`[...document.querySelectorAll('#top-sources tbody tr[data-source="192.0.2.7"] td')].slice(0, 3).map((td) => td.textContent).join("|") === "192.0.2.7|1|1"`) {
		t.Errorf("top source row %q, want 192.0.2.7 with 1 decision, 1 act", text(`#top-sources tbody`))
	}
	if eval(`document.querySelectorAll("#timeline svg script, #timeline svg foreignObject").length > 0`) {
		t.Fatal("the timeline holds markup")
	}
	if err := e.store.Put(context.Background(), store.Decision{ID: "d-live", Time: time.Now().UTC(), Asset: "shop", Source: "198.51.100.23",
		Verdict: "defer", Probability: 0.5}); err != nil {
		t.Fatal(err)
	}
	e.bus.Publish(bus.Event{Kind: "engine.decision", Source: "engine", Subject: "d-live"})
	wait(`#top-sources tbody tr[data-source="198.51.100.23"]`)
	wait(`#timeline svg rect.bar-defer`)

	// Requests and dissent rates over time, drawn from the agent's samples of the gateway's
	// counters: no requests yet, then voted requests through the gateway make the requests
	// series rise on the page without a reload.
	until := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, js, err)
		}
	}
	const reqPath = `document.querySelector('#traffic svg path[data-series="requests/s"]')`
	until("the requests series", reqPath+` !== null && Number(`+reqPath+`.dataset.points) >= 2`)
	if !eval(`document.querySelectorAll('#traffic svg path.series').length === 4`) {
		t.Errorf("traffic plot %q: want four series", text(`#traffic`))
	}
	if !eval(reqPath+`.dataset.max === "0"`) || !strings.Contains(text(`#traffic-span`), "totals: 0 requests") {
		t.Fatalf("requests before any were sent: %q", text(`#traffic-span`))
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	for i := range 25 {
		resp, err := hc.Get(e.gw.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("voted request %d: %d", i, resp.StatusCode)
		}
	}
	until("the requests series to rise", `Number(`+reqPath+`.dataset.max) > 0 && document.getElementById("traffic-span").textContent.includes("totals: 25 requests")`)

	// Assets: the web asset in no stage, with the evolution of the first stage's game; an
	// exploit attempt moves it to S2 and the row and the plot follow.
	wait(`#assets tbody tr[data-asset="web"]`)
	wait(`#evolution svg path.series`)
	if row := text(`#assets tbody tr[data-asset="web"]`); !strings.Contains(row, "none") {
		t.Errorf("web before any evidence: %q", row)
	}
	if ti := text(`#evolution-title`); !strings.Contains(ti, "stage S1 (1), the first: the asset is in no stage now") {
		t.Errorf("evolution title %q", ti)
	}
	if !eval(`document.querySelectorAll('#evolution svg path.series').length >= 4 && [...document.querySelectorAll('#evolution svg path.series')].every((p) => Number(p.dataset.points) >= 3)`) {
		t.Errorf("the evolution plot has too few series or points")
	}
	for range 2 {
		ev, err := eve.Parse([]byte(`{"timestamp":"2026-01-02T03:04:05.000000+0000","flow_id":1,"event_type":"alert","src_ip":"203.0.113.77","src_port":40000,` +
			`"dest_ip":"192.0.2.10","dest_port":8080,"proto":"TCP","alert":{"action":"allowed","gid":1,"signature_id":1,"rev":1,` +
			`"signature":"ET EXPLOIT Apache Struts RCE attempt","category":"Attempted Administrator Privilege Gain","severity":1},"app_proto":"http"}`))
		if err != nil {
			t.Fatal(err)
		}
		if !e.engine.Submit(ev) {
			t.Fatal("engine queue full")
		}
	}
	until("the web asset in S2", `document.querySelector('#assets tbody tr[data-asset="web"] td:nth-child(2)').textContent === "S2 (2)" && document.getElementById("evolution").dataset.stage === "S2"`)
	st := e.engine.Assets()[0]
	if row := text(`#assets tbody tr[data-asset="web"]`); st.Choice == nil || !strings.Contains(row, st.Choice.Defense) || !strings.Contains(row, st.Choice.DefenderType) {
		t.Errorf("web row %q, the engine's choice %+v", row, st.Choice)
	}
	if ti := text(`#evolution-title`); !strings.Contains(ti, "stage S2 (2): defender "+st.Choice.DefenderType+" sending "+st.Choice.Signal+" chooses "+st.Choice.Defense) {
		t.Errorf("evolution title %q for the choice %+v", ti, st.Choice)
	}

	// Enclave peers with their trust: a table and bars; a liar's markup in its ID is text,
	// and a change of trust shows after an enclave event.
	wait(`#peers tbody tr[data-peer="12D3KooWHonest"]`)
	if !eval(`document.querySelectorAll('#peers-plot svg rect.trust').length === 2 && document.querySelectorAll('#peers-plot svg rect.trust.low').length === 1`) {
		t.Errorf("trust bars: %q", text(`#peers-plot`))
	}
	if tb := text(`#peers tbody`); !strings.Contains(tb, "12D3KooWLiar"+hostile) || !strings.Contains(tb, "0.180") || !strings.Contains(tb, "0.960") {
		t.Errorf("peers table %q", tb)
	}
	e.peers.set(api.PeerTrust{ID: "12D3KooWHonest", Connected: true, InTopic: true, Membership: "certificate", Trust: 0.42})
	e.bus.Publish(bus.Event{Kind: "enclave.rejected", Source: "enclave", Subject: "12D3KooWHonest"})
	until("the new trust", `document.querySelector('#peers tbody tr[data-peer="12D3KooWHonest"] td:nth-child(5)')?.textContent === "0.420" && document.querySelectorAll('#peers tbody tr').length === 1`)
	if eval(`window.__pwned !== undefined`) || eval(`document.querySelectorAll(".plot script, .plot img, .plot foreignObject, #peers script, #peers img").length > 0`) {
		t.Fatal("markup from a peer ran or became elements")
	}

	screenshot(t, ctx, "dashboard-overview.png")

	// A forged cross-site POST: a page of another origin (same site: 127.0.0.1 on another
	// port, so the SameSite=Strict cookie goes along) submits a form to the revert endpoint.
	// The dashboard's origin check refuses it, and the block stays.
	revertURL := e.srv.URL + "/v1/decisions/d-xss/revert?action=" + url.QueryEscape(e.action)
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="POST" action="%s"></form><script>document.getElementById("f").submit()</script>`,
			html.EscapeString(revertURL))
	}))
	defer evil.Close()
	if err := chromedp.Do(ctx, chromedp.Navigate(evil.URL)); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`body`))); err != nil {
		t.Fatal(err)
	}
	for { // until the form has submitted (ctx bounds the wait)
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("the forged form did not submit: %v", err)
		}
		if strings.HasPrefix(loc, e.srv.URL) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(`body`))); err != nil {
		t.Fatal(err)
	}
	if body := text("body"); !strings.Contains(body, "must come from the dashboard") {
		t.Errorf("the forged cross-site POST got %q", body)
	}
	if !e.active(e.action) {
		t.Fatal("a forged cross-site POST reverted the block")
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}

	// The decision's page.
	wait(`#decisions tbody tr[data-id="d-xss"]`)
	if list := text(`#decisions tbody`); !strings.Contains(list, "192.0.2.7") || !strings.Contains(list, "act") {
		t.Errorf("decisions table %q", list)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#decisions tbody tr[data-id="d-xss"] a`))); err != nil {
		t.Fatal(err)
	}
	wait(`#decision-evidence .excerpt`)
	if excerpt := text(`#decision-evidence .excerpt`); excerpt != hostile {
		t.Errorf("excerpt shown as %q, want the markup as text %q", excerpt, hostile)
	}
	cms, facts := text(`#decision-countermeasures`), text(`#decision-facts`)
	if !strings.Contains(cms, hostile) || !strings.Contains(facts, hostile) {
		t.Errorf("countermeasures %q, facts %q: want the markup as text and Pr(attack)", cms, facts)
	}
	for _, want := range []string{"Pr(attack) = 0.9300; thresholds α = 0.8000, β = 0.3000 → act", "1.25 events/min",
		"recon → exploit (η-path probability 0.420)", "c* = 2, reconfiguration rate a = 1.50, attack intensity π = 0.60",
		"defender type high plays block with signal honeypot"} {
		if !strings.Contains(facts, want) {
			t.Errorf("decision facts %q lack %q", facts, want)
		}
	}
	if eval(`window.__pwned !== undefined`) || eval(`document.querySelectorAll("main script, main img, main [onerror]").length > 0`) {
		t.Fatal("markup from a decision ran or became elements")
	}

	// The revert button of the active block: a same-origin POST through the page, recorded in
	// the decision's story with the session that asked.
	if eval(`document.querySelectorAll("#decision-countermeasures button.revert").length !== 1`) {
		t.Fatalf("want one revert button (for the one active countermeasure): %q", text(`#decision-countermeasures`))
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#decision-countermeasures button.revert`))); err != nil {
		t.Fatal(err)
	}
	wait(`#decision-countermeasures .reverted`)
	if rv := text(`#decision-countermeasures .reverted`); !strings.Contains(rv, "reverted early at ") || !strings.Contains(rv, "by dashboard session ") ||
		!strings.Contains(rv, " from 127.0.0.1") {
		t.Errorf("the revert is shown as %q", rv)
	}
	if e.active(e.action) {
		t.Error("the block is still active after the page's revert")
	}
	if eval(`document.querySelectorAll("#decision-countermeasures button.revert").length !== 0`) {
		t.Error("a revert button is left for a countermeasure that is no longer active")
	}

	screenshot(t, ctx, "dashboard-decision.png")

	// Logging out from the page passes the CSRF check (a real browser's same-origin POST) and
	// ends the session: the API refuses the cookie afterwards.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#logout`))); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitNotPresent(chromedp.CSS(`#logout`))); err != nil {
		t.Fatal(err)
	}
	if body := text("body"); !strings.Contains(body, "Logged out") {
		t.Fatalf("after logout the page shows %q", body)
	}
	status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/v1/status").then(r => r.status)`, func(p *runtime.EvaluateParams) {
		await := true
		p.AwaitPromise = &await
	}))
	if err != nil || status != 401 {
		t.Fatalf("status after logout: %d %v", status, err)
	}
}

// screenshot takes a full-page screenshot, checks it is not blank, and saves it as name in
// $PROTEUS_SCREENSHOTS when that is set.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	colors := map[uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 7 {
		for x := b.Min.X; x < b.Max.X; x += 7 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[r>>12<<8|g>>12<<4|bl>>12] = true
		}
	}
	if len(colors) < 4 {
		t.Errorf("%s has %d colours: blank", name, len(colors))
	}
	if dir := os.Getenv("PROTEUS_SCREENSHOTS"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name), shot, 0o644); err != nil {
			t.Error(err)
		}
	}
}
