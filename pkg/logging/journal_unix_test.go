//go:build unix

package logging

import (
	"io/fs"
	"syscall"
)

type devIno struct{ dev, ino uint64 }

func statOf(fi fs.FileInfo) devIno {
	st := fi.Sys().(*syscall.Stat_t)
	return devIno{uint64(st.Dev), uint64(st.Ino)} //nolint:unconvert // widths differ per OS
}
