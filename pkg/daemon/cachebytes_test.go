package daemon

import (
	"context"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
	"github.com/shitenno/shitenno/pkg/config"
)

// TestCacheMaxBytesWired: [Cache] MaxBytes bounds the cache the daemon
// builds (a budget smaller than one entry caches nothing), and a reload
// that changes it drops the replies cached under the old bound, as a
// change of any other cache setting does, while one that keeps it keeps
// them.
func TestCacheMaxBytesWired(t *testing.T) {
	url, hits := testutil.CountingBackend(t, `{"Status":"OK","Data":"v"}`)
	parse := func(cache string) *config.Config {
		t.Helper()
		c, err := config.Parse("t.conf", []byte("RemoteURL = \""+url+"/\"\n[Cache]\nDefaultTTL = \"1h\"\n"+cache))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	lookups := func(b *Backend, n int) {
		t.Helper()
		for range n {
			if _, err := b.Lookup(context.Background(), "virtual", "k"); err != nil {
				t.Fatal(err)
			}
		}
	}

	b, err := NewBackend(parse("MaxBytes = 100\n"), nil, false)
	if err != nil {
		t.Fatal(err)
	}
	lookups(b, 2)
	if got := hits.Load(); got != 2 {
		t.Fatalf("MaxBytes below one entry: %d backend requests, want 2 (nothing cached)", got)
	}

	for _, tc := range []struct {
		name, before, after string
		drop                bool
	}{
		{"same MaxBytes", "MaxBytes = 65536\n", "MaxBytes = 65536\n", false},
		{"MaxBytes changed", "MaxBytes = 65536\n", "MaxBytes = 131072\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBackend(parse(tc.before), nil, false)
			if err != nil {
				t.Fatal(err)
			}
			hits.Store(0)
			lookups(b, 2)
			if err := b.Reload(parse(tc.after)); err != nil {
				t.Fatal(err)
			}
			lookups(b, 1)
			want := int64(1)
			if tc.drop {
				want = 2
			}
			if got := hits.Load(); got != want {
				t.Fatalf("%d backend requests, want %d (cache dropped: %v)", got, want, tc.drop)
			}
		})
	}
}
