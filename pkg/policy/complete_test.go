package policy

import "testing"

func TestComplete(t *testing.T) {
	for in, want := range map[string]bool{
		"a=b\n\n": true, "\n": true, "a=b\nc=d\n\nx": true,
		"a=b\n": false, "a=b\nc=d\n": false, "": false,
	} {
		if got := complete([]byte(in)); got != want {
			t.Errorf("complete(%q) = %v", in, got)
		}
	}
}
