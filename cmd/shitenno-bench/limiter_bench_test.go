package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/shitenno/shitenno/pkg/bridge"
	"github.com/shitenno/shitenno/pkg/bruteforce"
	"github.com/shitenno/shitenno/pkg/mailauth"
	"github.com/shitenno/shitenno/pkg/remote"
)

// dataBackend answers nginx logins from the data set without a network.
type dataBackend struct{}

func (dataBackend) Lookup(_ context.Context, _ string, obj any) (remote.Result, error) {
	m := obj.(map[string]any)
	i, ok := keyIndex([]byte(m["Auth-User"].(string)))
	if !ok || !known(i) {
		return remote.Result{Status: remote.NotFound}, nil
	}
	return remote.Result{Status: remote.Found, Data: json.RawMessage(`{"Auth-Server":"127.0.0.1","Auth-Port":10143}`)}, nil
}

func (dataBackend) LookupRaw(context.Context, string, json.RawMessage) (remote.Result, error) {
	return remote.Result{}, nil
}

func (b dataBackend) LookupObject(ctx context.Context, verb string, o remote.Object) (remote.Result, error) {
	return b.LookupRaw(ctx, verb, o.JSON())
}

// BenchmarkNginxHandler is shitenno-nginx's request path without the
// sockets (mailauth.HTTPHandler, bridge.Nginx, a backend answering from
// the data set), with the limiter as shitenno-nginx has it when
// [BruteForce] MaxFailures = 0 (off) and at its defaults (on): what the
// limiter adds per login, allocations included.
func BenchmarkNginxHandler(b *testing.B) {
	for _, tc := range []struct {
		name string
		max  int
	}{{"off", 0}, {"on", bruteforce.DefaultMaxFailures}} {
		b.Run(tc.name, func(b *testing.B) {
			l := bruteforce.DefaultLimits()
			l.MaxFailures = tc.max
			h := &mailauth.HTTPHandler{Handler: &bridge.Nginx{Backend: dataBackend{}, Limiter: bruteforce.New(l, bruteforce.Options{})}}
			reqs := make([]*http.Request, numKeys)
			nreq, _ := nginxWire()
			for i := range reqs {
				r, err := http.ReadRequest(bufioReader(nreq[i]))
				if err != nil {
					b.Fatal(err)
				}
				reqs[i] = r
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, reqs[n%numKeys])
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}
