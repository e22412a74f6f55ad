package main

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestSASLLogin(t *testing.T) {
	s := &server{}
	s.data.Users = map[string]User{"alice@example.org": {Password: "{PLAIN}secret"}}
	for _, tc := range []struct {
		user, pass, authzid string
		ok                  bool
	}{
		{"alice@example.org", "secret", "", true},
		{"Alice@Example.org", "secret", "", true},
		{"alice@example.org", "secret", "alice@example.org", true},
		{"alice@example.org", "secret", "bob@example.org", false},
		{"alice@example.org", "wrong", "", false},
		{"nobody@example.org", "secret", "", false},
	} {
		b, _ := json.Marshal(map[string]string{"Mechanism": "PLAIN", "User": tc.user, "Password": tc.pass, "Authzid": tc.authzid})
		v, ok, err := s.sasl(b)
		if err != nil || ok != tc.ok {
			t.Errorf("%+v: %v %v %v", tc, v, ok, err)
		}
		if ok && !reflect.DeepEqual(v, map[string]string{"User": "alice@example.org"}) {
			t.Errorf("%+v: data %v", tc, v)
		}
	}
	if _, _, err := s.sasl([]byte(`"x"`)); err == nil {
		t.Error("a string object accepted")
	}
}
