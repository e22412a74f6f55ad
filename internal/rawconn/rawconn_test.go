package rawconn

import (
	"net"
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
)

// A socket gives its descriptor, a pipe none.
func TestOf(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Of(a) != nil {
		t.Error("a pipe has a raw connection")
	}
	c, _ := testutil.ConnPair(t, "unix")
	rc := Of(c)
	if rc == nil {
		t.Fatal("a unix socket has no raw connection")
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		t.Fatalf("Control: fd %d, %v", fd, err)
	}
}
