package decoy

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// greeting is what a decoy sends for one service under one signal: hello goes out when the
// client connects (server-first protocols), reply after the client's first bytes
// (client-first protocols), depending on what they sent. Exactly one of them is set.
type greeting struct {
	hello func() []byte
	reply func(first []byte) []byte
}

// banners is one signal's greetings by service.
type banners map[string]greeting

// newGreeting builds the protocol greeting of service carrying identity id (validated by
// config: short printable ASCII).
func newGreeting(service, id string) (greeting, error) {
	switch service {
	case "ssh":
		// RFC 4253 4.2: the identification string.
		b := []byte("SSH-2.0-" + id + "\r\n")
		return greeting{hello: func() []byte { return b }}, nil
	case "smtp":
		// RFC 5321 4.2: the 220 service-ready greeting.
		b := []byte("220 " + id + "\r\n")
		return greeting{hello: func() []byte { return b }}, nil
	case "mysql":
		// Thread IDs count up from a few on a server that started recently.
		return greeting{hello: func() []byte { return mysqlHandshake(id, 8+rand.Uint32N(5000), rand.Uint64()) }}, nil
	case "http":
		ctype, body := notFoundPage(id)
		head := "HTTP/1.1 404 Not Found\r\nServer: " + id + "\r\nDate: "
		tail := "\r\nContent-Type: " + ctype + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		return greeting{reply: func([]byte) []byte {
			return []byte(head + time.Now().UTC().Format(http.TimeFormat) + tail)
		}}, nil
	case "redis":
		// INFO gets the bulk string a server answers with; anything else the error Redis
		// gives it (one answer, then the decoy hangs up).
		info := "# Server\r\nredis_version:" + id + "\r\nredis_mode:standalone\r\nos:Linux\r\ntcp_port:6379\r\n"
		b := []byte("$" + strconv.Itoa(len(info)) + "\r\n" + info + "\r\n")
		return greeting{reply: func(first []byte) []byte { return redisReply(first, b) }}, nil
	}
	return greeting{}, fmt.Errorf("decoy: unknown service %q", service)
}

// notFoundPage is the content type and body of the 404 page of the server family that
// identity id names, as that server's default error page looks (so that the page does not
// contradict the Server header an attacker is shown): nginx's, Apache httpd's, or a plain
// one for any other identity.
func notFoundPage(id string) (ctype, body string) {
	switch lower := strings.ToLower(id); {
	case strings.HasPrefix(lower, "nginx"):
		return "text/html", "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not Found</h1></center>\r\n" +
			"<hr><center>" + id + "</center>\r\n</body>\r\n</html>\r\n"
	case strings.HasPrefix(lower, "apache"):
		return "text/html; charset=iso-8859-1", "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>404 Not Found</title>\n" +
			"</head><body>\n<h1>Not Found</h1>\n<p>The requested URL was not found on this server.</p>\n</body></html>\n"
	}
	return "text/html", "<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
}

// redisReply answers a client's first command: INFO with info, other commands with the
// errors Redis gives them.
func redisReply(first, info []byte) []byte {
	cmd := redisCommand(first)
	switch cmd {
	case "info":
		return info
	case "get", "set":
		return []byte("-ERR wrong number of arguments for '" + cmd + "' command\r\n")
	case "":
		return []byte("-ERR unknown command ''\r\n")
	}
	return []byte("-ERR unknown command '" + cmd + "', with args beginning with: \r\n")
}

// redisCommand is the lower-cased name of the first command in b, in the RESP array form
// (*1\r\n$4\r\ninfo\r\n) or the inline form (INFO\r\n); "" when there is none. Only
// ASCII letters are kept, so the name is safe to echo.
func redisCommand(b []byte) string {
	s := string(b)
	if strings.HasPrefix(s, "*") {
		// Skip the array header and the bulk length line.
		for range 2 {
			_, rest, ok := strings.Cut(s, "\n")
			if !ok {
				return ""
			}
			s = rest
		}
	}
	end := strings.IndexFunc(s, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	if end < 0 {
		end = len(s)
	}
	return strings.ToLower(s[:min(end, 32)])
}

// mysqlHandshake is a MySQL protocol v10 initial handshake packet (sequence 0) announcing
// version, with a per-connection thread ID and scramble (a fixed scramble would fingerprint
// the decoy).
func mysqlHandshake(version string, thread uint32, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(thread)))
	scramble := make([]byte, 20)
	for i := range scramble {
		scramble[i] = byte(0x21 + r.IntN(0x7e-0x21)) // printable, never NUL, as servers send
	}
	p := []byte{0x0a}
	p = append(p, version...)
	p = append(p, 0)
	p = binary.LittleEndian.AppendUint32(p, thread)
	p = append(p, scramble[:8]...)
	p = append(p, 0)
	const caps = 0x81aff7ff // protocol 4.1, secure connection, plugin auth, ...
	p = binary.LittleEndian.AppendUint16(p, caps&0xffff)
	p = append(p, 0x21)                        // utf8_general_ci
	p = binary.LittleEndian.AppendUint16(p, 2) // SERVER_STATUS_AUTOCOMMIT
	p = binary.LittleEndian.AppendUint16(p, caps>>16)
	p = append(p, 21) // length of the auth plugin data
	p = append(p, make([]byte, 10)...)
	p = append(p, scramble[8:]...)
	p = append(p, 0)
	p = append(p, "mysql_native_password"...)
	p = append(p, 0)
	hdr := []byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 0}
	return append(hdr, p...)
}
