package socketmap

import "testing"

// complete is true only when ReadNetstring would not read any further.
func TestComplete(t *testing.T) {
	for in, want := range map[string]bool{
		"3:abc,": true, "3:abc,5:": true, "0:,": true,
		"3:abc": false, "3:ab": false, "3": false, "": false, ":": false,
		"x:abc,": false, "1234567890:": false,
	} {
		if got := complete([]byte(in)); got != want {
			t.Errorf("complete(%q) = %v", in, got)
		}
	}
}
