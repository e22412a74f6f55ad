package daemon

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/shitenno/shitenno/pkg/config"
)

// TestMainSocketUnitsNames: the main socket unit of each program
// (init/systemd/shitenno-<name>.socket) passes its socket under a
// FileDescriptorName the daemon gives to its main listener. (The
// optional postfix units are checked against shitenno-postfix's own
// listeners in cmd/shitenno-postfix.)
func TestMainSocketUnitsNames(t *testing.T) {
	cfg, err := config.Parse("test.conf", []byte("RemoteURL = \"http://127.0.0.1:1/\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^FileDescriptorName=(.*)$`)
	for name := range primaryKinds {
		unit := "shitenno-" + name + ".socket"
		b, err := os.ReadFile(filepath.Join("../../init/systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(b)
		if m == nil {
			t.Errorf("%s: no FileDescriptorName=", unit)
			continue
		}
		main := Program{Name: name}.Endpoints(cfg)[0]
		if fd := string(m[1]); fd != main.Name && !slices.Contains(main.Aliases, fd) {
			t.Errorf("%s: FileDescriptorName=%s, the daemon's main listener takes %s or %v", unit, fd, main.Name, main.Aliases)
		}
		if main.Unit != unit {
			t.Errorf("shitenno-%s names its unit %s, want %s", name, main.Unit, unit)
		}
	}
}
