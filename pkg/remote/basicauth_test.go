package remote

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBasicAuthFromURL: a RemoteURL with user:password sends them as
// HTTP basic authentication, as net/http's client does for such URLs.
func TestBasicAuthFromURL(t *testing.T) {
	url := startHTTPTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "shitenno" || p != "s3cret:pw" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{"Status":"OK","Data":"yes"}`)
	}))
	base := strings.Replace(url, "http://", "http://shitenno:s3cret%3Apw@", 1)
	c, err := New(Options{URLs: []string{base}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdle()
	res, err := c.Lookup(context.Background(), "virtual", "k")
	if err != nil || res.Status != Found {
		t.Fatalf("lookup with credentials in the URL: %+v %v", res, err)
	}
	// Without them the backend refuses, so the test can fail.
	c2, _ := New(Options{URLs: []string{url}, Timeout: 5 * time.Second})
	defer c2.CloseIdle()
	if _, err := c2.Lookup(context.Background(), "virtual", "k"); err == nil {
		t.Fatal("the backend accepted a request without credentials")
	}
}
