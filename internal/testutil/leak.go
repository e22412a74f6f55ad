package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyTestMain runs a package's tests and then fails them if any left
// a goroutine behind (a connection or server not closed): the TestMain of
// every package whose tests start servers, so that what counts as a leak
// is said in one place.
func VerifyTestMain(m *testing.M) { goleak.VerifyTestMain(m) }
