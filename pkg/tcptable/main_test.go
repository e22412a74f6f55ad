package tcptable

import (
	"testing"

	"github.com/shitenno/shitenno/internal/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
