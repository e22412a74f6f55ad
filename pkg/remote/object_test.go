package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
)

var testShape = NewShape("Context", "Object")

// TestLookupObject: the backend gets the request LookupRaw would send,
// with the cache on or off, and a cache hit is found from the strings
// alone: the same strings hit, any other split of them misses.
func TestLookupObject(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	be := newCountingBackend(answer("OK", `{"uid":1}`, "Cache-Control", "max-age=60"))
	srv := startHTTPTest(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.URL.Path+" "+string(b))
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(b))
		be.ServeHTTP(w, r)
	}))
	ctx := context.Background()
	for _, cache := range []*Cache{nil, NewCache(10, 0, 0)} {
		mu.Lock()
		bodies = nil
		mu.Unlock()
		c := newLookupClient(t, Options{URLs: []string{srv}, Cache: cache})
		for _, o := range []Object{
			testShape.Object("shared", "alice@example.org"),
			testShape.Object("shared", "alice@example.org"), // a hit when cached
			testShape.Object("shared/", "alice@example.org"),
			testShape.Object("shared/alice", "@example.org"),
			StringObject("shared"),
		} {
			if _, err := c.LookupObject(ctx, "passdb", o); err != nil {
				t.Fatal(err)
			}
		}
		want := []string{
			`/passdb {"Verb":"passdb","Object":{"Context":"shared","Object":"alice@example.org"}}`,
			`/passdb {"Verb":"passdb","Object":{"Context":"shared","Object":"alice@example.org"}}`,
			`/passdb {"Verb":"passdb","Object":{"Context":"shared/","Object":"alice@example.org"}}`,
			`/passdb {"Verb":"passdb","Object":{"Context":"shared/alice","Object":"@example.org"}}`,
			`/passdb {"Verb":"passdb","Object":"shared"}`,
		}
		if cache != nil {
			want = append(want[:1], want[2:]...)
		}
		// Under Uncached, every lookup reaches the backend.
		for range 2 {
			if _, err := c.LookupObject(Uncached(ctx), "passdb", StringObject("bob")); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, `/passdb {"Verb":"passdb","Object":"bob"}`, `/passdb {"Verb":"passdb","Object":"bob"}`)
		mu.Lock()
		got := bodies
		mu.Unlock()
		if len(got) != len(want) {
			t.Fatalf("cache %v: backend got %q, want %q", cache != nil, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("cache %v: request %d: %s, want %s", cache != nil, i, got[i], want[i])
			}
		}
	}
}

// FuzzObject: an Object's JSON is what encoding/json writes for the same
// strings, and moving a byte from one string to another (verb included)
// changes the cache key.
func FuzzObject(f *testing.F) {
	f.Add("passdb", "shared", "alice@example.org")
	f.Add("", "\x00", "\xff<&>")
	f.Fuzz(func(t *testing.T, verb, a, b string) {
		pair := testShape.Object(a, b)
		want, _ := json.Marshal(struct{ Context, Object string }{a, b})
		if got := pair.JSON(); !bytes.Equal(got, want) {
			t.Fatalf("%q %q -> %s, encoding/json %s", a, b, got, want)
		}
		if got, want := StringObject(a).JSON(), AppendJSONString(nil, a); !bytes.Equal(got, want) {
			t.Fatalf("%q -> %s, want %s", a, got, want)
		}
		key := objectDigest(verb, pair)
		if objectDigest(verb, StringObject(a)) == key {
			t.Fatalf("string and pair objects share a key: %q %q %q", verb, a, b)
		}
		if other := NewShape("Context", "Object").Object(a, b); objectDigest(verb, other) == key {
			t.Fatal("two shapes share a key")
		}
		if a != "" {
			if objectDigest(verb+a[:1], testShape.Object(a[1:], b)) == key {
				t.Fatalf("%q %q %q: a byte moved from a to the verb keeps the key", verb, a, b)
			}
			if objectDigest(verb, testShape.Object(a[1:], a[:1]+b)) == key {
				t.Fatalf("%q %q %q: a byte moved from a to b keeps the key", verb, a, b)
			}
		}
		if cacheDigest(EncodeRequest(nil, verb, pair.JSON())) == key {
			t.Fatal("an object key equals the raw request's key")
		}
	})
}
