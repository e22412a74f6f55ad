package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// The naive reference daemon (issue #21) is what anyone would write in an
// afternoon to bridge postfix or dovecot to the backend: one goroutine per
// connection, the standard net/http client, encoding/json both ways, no
// cache, no coalescing, no failover, no metrics. It is deliberately not
// shitenno and shares none of its code: shitenno's uncached path is held
// against it, so whatever shitenno's extra machinery costs shows.

// serveNaive listens on a unix socket and answers proto ("postfix" or
// "dovecot") lookups by POSTing each to base+verb, until killed.
func serveNaive(proto, path, base string) error {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The one setting such a daemon gets right after its first load test:
	// the default 2 idle connections would reconnect at every lookup.
	tr.MaxIdleConnsPerHost = 1024
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go naiveConn(c, proto, base, hc)
	}
}

// naiveConn serves one connection, one request at a time.
func naiveConn(c net.Conn, proto, base string, hc *http.Client) {
	defer c.Close()
	br := bufio.NewReader(c)
	answer := naiveDict
	if proto == "postfix" {
		answer = naivePostfix
	}
	for {
		out, err := answer(br, base, hc)
		if err != nil {
			return
		}
		if out == "" {
			continue
		}
		if _, err := c.Write([]byte(out)); err != nil {
			return
		}
	}
}

// naivePostfix reads one socketmap request and returns its reply.
func naivePostfix(br *bufio.Reader, base string, hc *http.Client) (string, error) {
	p, err := readNetstring(br, nil)
	if err != nil {
		return "", err
	}
	name, key, _ := strings.Cut(string(p), " ")
	data, found, err := naiveAsk(hc, base+name, key)
	var out, s string
	switch {
	case err == nil && found && json.Unmarshal(data, &s) == nil:
		out = "OK " + s
	case err == nil && !found:
		out = "NOTFOUND "
	default:
		out = "TEMP backend error"
	}
	return strconv.Itoa(len(out)) + ":" + out + ",", nil
}

// naiveDict reads one dict line and returns its reply, "" for a line it
// does not answer.
func naiveDict(br *bufio.Reader, base string, hc *http.Client) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if line[0] != 'L' {
		return "", nil // the hello, or a command this daemon ignores
	}
	path, _, _ := strings.Cut(strings.TrimSuffix(line[1:], "\n"), "\t")
	parts := strings.SplitN(path, "/", 3) // shared/<verb>/<key>
	if len(parts) != 3 || parts[0] != "shared" {
		return "Funsupported\n", nil
	}
	data, found, err := naiveAsk(hc, base+parts[1], map[string]string{"Context": "shared", "Object": parts[2]})
	switch {
	case err != nil:
		return "Fbackend error\n", nil
	case !found:
		return "N\n", nil
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, data)
	r := strings.NewReplacer("\x01", "\x011", "\t", "\x01t", "\n", "\x01n")
	return "O" + r.Replace(compact.String()) + "\n", nil
}

// naiveAsk POSTs {"Verb","Object"} to url and decodes the reply.
func naiveAsk(hc *http.Client, url string, obj any) (data json.RawMessage, found bool, err error) {
	verb := url[strings.LastIndexByte(url, '/')+1:]
	body, err := json.Marshal(struct {
		Verb   string
		Object any
	}{verb, obj})
	if err != nil {
		return nil, false, err
	}
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, false, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, false, err
	}
	var reply struct {
		Status string
		Data   json.RawMessage
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, false, err
	}
	switch reply.Status {
	case "OK":
		return reply.Data, true, nil
	case "KO":
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("status %q", reply.Status)
}
