package mimic

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/proteus-defense/proteus/bus"
)

// EventCanary is published for every request that presents one of Options.Canaries (tokens
// planted in the decoy executor's content: whoever presents one harvested it there); attrs:
// client, canary, where (the header, query, path or body it was in), method, path,
// redirected ("true" when the client was being served by the decoy).
const EventCanary = "gateway.canary"

// maxCanaryScan bounds how much of a request body is searched for canaries.
const maxCanaryScan = 64 << 10

// canaryIn returns the first canary r presents and where: in any header value (Basic
// credentials decoded), the path, the query or the body (the first maxCanaryScan bytes),
// each as sent and percent-decoded (a form or a query carries a password encoded).
func canaryIn(canaries []string, r *http.Request, body []byte) (canary, where string, ok bool) {
	if len(canaries) == 0 {
		return "", "", false
	}
	find := func(s string) (string, bool) {
		for _, c := range canaries {
			if strings.Contains(s, c) {
				return c, true
			}
		}
		return "", false
	}
	findDecoded := func(s string) (string, bool) {
		if c, ok := find(s); ok {
			return c, true
		}
		if strings.ContainsAny(s, "%+") {
			if u, err := url.QueryUnescape(s); err == nil {
				return find(u)
			}
		}
		return "", false
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			if c, ok := findDecoded(v); ok {
				return c, "header " + k, true
			}
			if k == "Authorization" || k == "Proxy-Authorization" {
				if scheme, cred, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "basic") {
					if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred)); err == nil {
						if c, ok := find(string(dec)); ok {
							return c, "header " + k + " (basic credentials)", true
						}
					}
				}
			}
		}
	}
	if c, ok := findDecoded(r.URL.EscapedPath()); ok {
		return c, "path", true
	}
	if c, ok := findDecoded(r.URL.RawQuery); ok {
		return c, "query", true
	}
	if len(body) > 0 {
		b := body[:min(len(body), maxCanaryScan)]
		for _, c := range canaries {
			if bytes.Contains(b, []byte(c)) {
				return c, "body", true
			}
		}
		if bytes.ContainsAny(b, "%+") {
			if c, ok := findDecoded(string(b)); ok {
				return c, "body", true
			}
		}
	}
	return "", "", false
}

// checkCanary publishes EventCanary when r presents a canary.
func (g *Gateway) checkCanary(r *http.Request, client netip.Addr, body []byte, redirected bool) {
	c, where, ok := canaryIn(g.o.Canaries, r, body)
	if !ok {
		return
	}
	g.log.Warn("a canary was presented", "client", client, "where", where, "method", r.Method, "path", r.URL.Path, "redirected", redirected)
	if g.o.Bus == nil {
		return
	}
	cut := func(s string) string { return s[:min(len(s), 256)] }
	red := "false"
	if redirected {
		red = "true"
	}
	g.o.Bus.Publish(bus.Event{Kind: EventCanary, Source: "gateway", Subject: client.String(), Attrs: map[string]any{
		"client": client.String(), "canary": c, "where": where, "method": cut(r.Method), "path": cut(r.URL.Path),
		"user_agent": cut(r.UserAgent()), "redirected": red}})
}
