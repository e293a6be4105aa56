package mimic

import (
	"html"
	"net/http"
	"strconv"
)

// Page styles: how the gateway's own pages look under one identity, so that what an attacker
// reads in an error page fits the stack the identity presents (the game's signal: m_H a
// hardened, current stack; m_L an older, weaker-looking one). No style names an
// implementation by itself: the only name in a page is the identity's own Server value, and
// only in the classic style.
const (
	// PagesPlain is one line of text, "404 Not Found" (the default; what a bare API server
	// or a hardened proxy answers).
	PagesPlain = "plain"
	// PagesModern is a minimal HTML5 page with the status and nothing about the server (a
	// current stack with version tokens off).
	PagesModern = "modern"
	// PagesClassic is the verbose HTML 2.0 page of an older stack: the status's name, an
	// explanation, and an address line with the Server value (as such servers print it).
	PagesClassic = "classic"
)

// PageStyles are the known page styles.
var PageStyles = []string{PagesPlain, PagesModern, PagesClassic}

// styledStatuses are the statuses the gateway answers with a page of its own: its refusals,
// net/http's (handed to the gateway), and every voted error (boilerplate).
var styledStatuses = []int{400, 401, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422,
	425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505}

// classicText is the classic style's explanation of a status.
var classicText = map[int]string{
	400: "Your browser sent a request that this server could not understand.",
	401: "This server could not verify that you are authorized to access the document requested.",
	403: "You don't have permission to access this resource on this server.",
	404: "The requested URL was not found on this server.",
	405: "The requested method is not allowed for the URL.",
	408: "Server timeout waiting for the HTTP request from the client.",
	411: "A request of the requested method requires a valid Content-length.",
	413: "The requested resource does not allow request data with this request, or the amount of data provided in the request exceeds the capacity limit.",
	414: "The requested URL's length exceeds the capacity limit for this server.",
	429: "The user has sent too many requests in a given amount of time.",
	431: "Your browser sent a request that this server could not understand. Size of a request header field exceeds server limit.",
	500: "The server encountered an internal error or misconfiguration and was unable to complete your request.",
	501: "The requested method is not supported for the URL.",
	502: "The proxy server received an invalid response from an upstream server.",
	503: "The server is temporarily unable to service your request due to maintenance downtime or capacity problems. Please try again later.",
	504: "The gateway did not receive a timely response from the upstream server or application.",
	505: "The server does not support the HTTP protocol version used in the request.",
}

// StylePages returns the pages of style for an identity whose Server value is server: one
// per status the gateway answers itself, nil for the plain style (the gateway's default
// page) or an unknown one.
func StylePages(style, server string) map[int]Page {
	var page func(status int) string
	switch style {
	case PagesModern:
		page = func(st int) string {
			title := strconv.Itoa(st) + " " + http.StatusText(st)
			return "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>" + title +
				"</title></head>\n<body>\n<h1>" + title + "</h1>\n</body>\n</html>\n"
		}
	case PagesClassic:
		page = func(st int) string {
			text := classicText[st]
			if text == "" {
				text = "The server cannot process the request."
			}
			addr := ""
			if server != "" {
				addr = "<hr>\n<address>" + html.EscapeString(server) + "</address>\n"
			}
			return "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>" + strconv.Itoa(st) + " " +
				http.StatusText(st) + "</title>\n</head><body>\n<h1>" + http.StatusText(st) + "</h1>\n<p>" + text + "</p>\n" +
				addr + "</body></html>\n"
		}
	default:
		return nil
	}
	pages := make(map[int]Page, len(styledStatuses))
	for _, st := range styledStatuses {
		pages[st] = Page{ContentType: "text/html; charset=utf-8", Body: []byte(page(st))}
	}
	return pages
}
