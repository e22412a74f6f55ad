//go:build unix

package logging

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// journalStreamMatches compares JOURNAL_STREAM ("device:inode", decimal)
// with f's device and inode, as systemd.exec(5) recommends.
func journalStreamMatches(v string, f *os.File) bool {
	dev, ino, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	d, err1 := strconv.ParseUint(dev, 10, 64)
	i, err2 := strconv.ParseUint(ino, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	return uint64(st.Dev) == d && uint64(st.Ino) == i //nolint:unconvert // widths differ per OS
}
