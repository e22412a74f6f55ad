package tcptable

import "testing"

func TestComplete(t *testing.T) {
	for in, want := range map[string]bool{"get a\n": true, "\n": true, "get a": false, "": false} {
		if got := complete([]byte(in)); got != want {
			t.Errorf("complete(%q) = %v", in, got)
		}
	}
}
