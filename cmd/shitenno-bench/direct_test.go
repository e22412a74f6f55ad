package main

import (
	"strconv"
	"testing"
)

// TestCheckDirectData: the direct reference takes a postfix or policy
// reply's string in its plain encoding and, through encoding/json, in any
// other valid one, and refuses any other value.
func TestCheckDirectData(t *testing.T) {
	want := virtualValue(7)
	for _, tc := range []struct {
		proto, data string
		ok          bool
	}{
		{"postfix", strconv.Quote(want), true},
		{"postfix", `"\u0075` + want[1:] + `"`, true}, // the same string, escaped
		{"postfix", strconv.Quote(virtualValue(8)), false},
		{"postfix", strconv.Quote(want)[:len(want)+1], false},
		{"postfix", `{"v":` + strconv.Quote(want) + `}`, false},
		{"policy", strconv.Quote(policyAction(7)), true},
		{"policy", strconv.Quote(policyAction(7) + " "), false},
	} {
		if err := checkDirectData(tc.proto, 7, []byte(tc.data)); (err == nil) != tc.ok {
			t.Errorf("%s %s: %v, want ok %v", tc.proto, tc.data, err, tc.ok)
		}
	}
}
