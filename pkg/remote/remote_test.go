package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestClient(t *testing.T, h http.HandlerFunc, o Options) (*Client, *httptest.Server) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if o.URLs == nil {
		o.URLs = []string{srv.URL + "/api/"}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, srv
}

func TestLookupRequestAndReply(t *testing.T) {
	var gotPath, gotBody, gotCT string
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		gotPath, gotBody, gotCT = r.URL.EscapedPath(), string(b), r.Header.Get("Content-Type")
		io.WriteString(w, `{"Verb":"virtual","Object":"a b@x","Status":"OK","Data":"alice@example.org"}`)
	}, Options{})
	res, err := c.Lookup(context.Background(), "virtual", "a b@x")
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != Found || string(res.Data) != `"alice@example.org"` {
		t.Errorf("result %+v", res)
	}
	if gotPath != "/api/virtual" || gotBody != `{"Verb":"virtual","Object":"a b@x"}` || gotCT != "application/json" {
		t.Errorf("request: %s %s %s", gotPath, gotBody, gotCT)
	}
}

// TestVerbIsPathEscaped: a verb cannot change the URL's structure.
func TestVerbIsPathEscaped(t *testing.T) {
	var got string
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath() + "?" + r.URL.RawQuery
		io.WriteString(w, `{"Status":"KO"}`)
	}, Options{})
	if _, err := c.Lookup(context.Background(), "../admin?x=1#f", "k"); err != nil {
		t.Fatal(err)
	}
	if got != "/api/..%2Fadmin%3Fx=1%23f?" {
		t.Errorf("path %q", got)
	}
}

// TestFailures: everything that is not a clean OK/KO is a *Error, never
// a NotFound.
func TestFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		kind   Kind
	}{
		{"500", 500, `{"Status":"KO"}`, "http"},
		{"404", 404, ``, "http"},
		{"302", 302, ``, "http"},
		{"html", 200, `<html>`, "json"},
		{"empty", 200, ``, "json"},
		{"truncated", 200, `{"Status":"OK","Data":"x`, "json"},
		{"no status", 200, `{"Data":"x"}`, "status"},
		{"lower ok", 200, `{"Status":"ok","Data":"x"}`, "status"},
		{"maybe", 200, `{"Status":"MAYBE"}`, "status"},
		{"null status", 200, `{"Status":null}`, "status"},
		{"status number", 200, `{"Status":1}`, "json"},
		{"too big", 200, `{"Status":"OK","Data":"` + strings.Repeat("x", 2000) + `"}`, "body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}, Options{MaxReplySize: 1000})
			_, err := c.Lookup(context.Background(), "v", "k")
			var re *Error
			if !errors.As(err, &re) || re.Kind != tc.kind {
				t.Fatalf("got %v (%#v), want kind %s", err, err, tc.kind)
			}
		})
	}
}

func TestTimeoutBoundsWholeExchange(t *testing.T) {
	// Headers arrive at once, the body trickles: the Timeout still holds.
	c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		io.WriteString(w, `{"Status":`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}, Options{Timeout: 100 * time.Millisecond})
	begin := time.Now()
	_, err := c.Lookup(context.Background(), "v", "k")
	var re *Error
	if !errors.As(err, &re) || re.Kind != "timeout" {
		t.Fatalf("got %v", err)
	}
	if time.Since(begin) > 3*time.Second {
		t.Fatalf("timeout not enforced: %s", time.Since(begin))
	}
}

func TestConnectionRefusedIsBeforeResponse(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/"
	srv.Close()
	c, err := New(Options{URLs: []string{url}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(context.Background(), "v", "k")
	var re *Error
	if !errors.As(err, &re) || re.Kind != "transport" || !re.BeforeResponse {
		t.Fatalf("got %#v", err)
	}
}

func TestKeepAlive(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Status":"KO"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, _ := New(Options{URLs: []string{srv.URL + "/"}, Timeout: time.Second})
	for i := 0; i < 20; i++ {
		if _, err := c.Lookup(context.Background(), "v", i); err != nil {
			t.Fatal(err)
		}
	}
	if n := conns.Load(); n > 1 {
		t.Errorf("%d connections for 20 sequential lookups; want keep-alive", n)
	}
}

func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":       `"plain"`,
		"q\"b\\":      `"q\"b\\"`,
		"tab\tnl\n\r": `"tab\tnl\n\r"`,
		"\x01<&>":     `"\u0001\u003c\u0026\u003e"`,
		"café":        `"café"`,
		"bad\xffutf8": `"bad\ufffdutf8"`,
		"\u2028":      `"\u2028"`,
	} {
		if got := string(AppendJSONString(nil, in)); got != want {
			t.Errorf("%q: got %s want %s", in, got, want)
		}
	}
}

// FuzzParseReply: the reply parser never panics, and accepts only OK/KO.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		`{"Verb":"v","Object":"k","Status":"OK","Data":"x"}`, `{"Status":"KO","Data":null}`,
		`{"Status":"MAYBE"}`, `<html>`, ``, `{"Status":"OK","Data":{"a":[1,2]}}`, `[1]`, `{"status":"OK"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := ParseReply(in)
		if err != nil {
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("error of type %T", err)
			}
			return
		}
		if r.Status != Found && r.Status != NotFound {
			t.Fatalf("status %v", r.Status)
		}
	})
}

// FuzzAppendJSONString: the output is always a valid JSON string.
func FuzzAppendJSONString(f *testing.F) {
	f.Add("alice@example.org")
	f.Add("\x00\xff\"\\")
	f.Add("a<b>&c\u2028\u2029\t\r\n\x7f é")
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, b, err)
		}
		// Byte for byte what encoding/json writes: the cache key and the
		// backend's view of a request must not depend on which encoder ran.
		if want, _ := json.Marshal(s); !bytes.Equal(b, want) {
			t.Fatalf("%q -> %s, encoding/json %s", s, b, want)
		}
	})
}

// TestHugeMaxReplySize: a bound near the int64 maximum must not overflow
// into refusing every reply.
func TestHugeMaxReplySize(t *testing.T) {
	for _, max := range []int64{math.MaxInt64, math.MaxInt64 - 1} {
		c, _ := newTestClient(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"Status":"OK","Data":"x"}`)
		}, Options{MaxReplySize: max})
		if _, err := c.Lookup(context.Background(), "v", "k"); err != nil {
			t.Fatalf("MaxReplySize %d: %v", max, err)
		}
	}
}
