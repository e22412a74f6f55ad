package remote

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
)

// FuzzH1Response feeds arbitrary bytes to the in-goroutine client as a
// backend's reply. It must never panic nor read past its bounds; it may
// refuse more than net/http (http.ReadResponse, skipping 1xx responses as
// net/http's transport does) but not accept anything net/http refuses;
// and where both accept a reply, both must read the same status, body
// and keep-alive decision.
func FuzzH1Response(f *testing.F) {
	for _, s := range []string{
		okReply(""),
		okReply("Connection: close\r\nCache-Control: max-age=60\r\n"),
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(`{"Status":`, `"OK"}`),
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n" + okReply(""),
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\n\r\nuntil the end",
		"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 301 Moved\nLocation: /x\nContent-Length: 0\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mine, mineErr := h1ParseAll(data)
		theirs, theirErr := netHTTPParseAll(data)
		if mineErr == nil && theirErr != nil {
			t.Fatalf("accepted a reply net/http refuses (%v)", theirErr)
		}
		if mineErr != nil || theirErr != nil {
			return
		}
		if mine.status != theirs.status || !bytes.Equal(mine.body, theirs.body) {
			t.Fatalf("status %d body %q, net/http: status %d body %q", mine.status, mine.body, theirs.status, theirs.body)
		}
		if mine.status != http.StatusSwitchingProtocols && mine.close != theirs.close {
			t.Fatalf("close %v, net/http %v", mine.close, theirs.close)
		}
	})
}

type parsed struct {
	status int
	body   []byte
	close  bool
}

// h1ParseAll reads a reply as the in-goroutine client does.
func h1ParseAll(data []byte) (parsed, error) {
	pc := &h1Conn{br: bufio.NewReaderSize(bytes.NewReader(data), 4096)}
	pc.head.br, pc.body.pc = pc.br, pc
	pc.head.budget = h1MaxHead
	h, err := readHead(&pc.head, http.Header{})
	if err != nil {
		return parsed{}, err
	}
	pc.body.reset(&h)
	body, err := io.ReadAll(io.LimitReader(&pc.body, 4<<20))
	if err != nil {
		return parsed{}, err
	}
	if h.framing == bodyLength && int64(len(body)) != h.length {
		panic("length body read short without an error")
	}
	return parsed{status: h.status, body: body, close: h.close}, nil
}

// netHTTPParseAll reads a reply as net/http's transport does.
func netHTTPParseAll(data []byte) (parsed, error) {
	br := bufio.NewReader(bytes.NewReader(data))
	req := &http.Request{Method: http.MethodPost}
	for n := 0; ; n++ {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return parsed{}, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 && n < h1Max1xx-1 {
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return parsed{}, err
		}
		return parsed{status: resp.StatusCode, body: body, close: resp.Close}, nil
	}
}
