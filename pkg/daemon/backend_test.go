package daemon

import (
	"context"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/config"
)

// TestCredentialsIgnoreDefaultTTL: for protocols whose lookups carry
// passwords, the configured default TTLs never cache a reply; only the
// backend's own headers may.
func TestCredentialsIgnoreDefaultTTL(t *testing.T) {
	url, hits := testutil.CountingBackend(t, `{"Status":"OK","Data":{"password":"{PLAIN}x"}}`)
	cfg, err := config.Parse("t.conf", []byte("RemoteURL = \""+url+"/\"\n[Cache]\nDefaultTTL = \"1h\"\nNegativeTTL = \"1h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		credentials bool
		want        int64
	}{{false, 1}, {true, 3}} {
		hits.Store(0)
		b, err := NewBackend(cfg, nil, tc.credentials)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := b.Lookup(context.Background(), "passdb", "alice"); err != nil {
				t.Fatal(err)
			}
		}
		if got := hits.Load(); got != tc.want {
			t.Errorf("credentials=%v: %d backend requests for 3 lookups, want %d", tc.credentials, got, tc.want)
		}
	}
}
