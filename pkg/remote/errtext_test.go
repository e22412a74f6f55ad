package remote

import (
	"context"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestTransportErrorNamesTheURL: a failed exchange reads in the logs as
// http.Client wrote it, the URL named and its password hidden.
func TestTransportErrorNamesTheURL(t *testing.T) {
	srv := httptest.NewServer(nil)
	u, _ := url.Parse(srv.URL)
	srv.Close()
	base := "http://user:secret@" + u.Host + "/"
	c, err := New(Options{URLs: []string{base}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Lookup(context.Background(), "virtual", "k")
	if err == nil {
		t.Fatal("lookup against a closed port succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, `Post "http://user:***@`+u.Host+`/virtual"`) || strings.Contains(msg, "secret") {
		t.Fatalf("error text %q", msg)
	}
}
