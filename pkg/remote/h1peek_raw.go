//go:build unix && !aix && !(linux && 386) && !solaris && !illumos

package remote

import (
	"syscall"
	"unsafe"
)

// peekRecv peeks at one byte of fd without waiting, by a raw recvfrom,
// and returns its errno (0: a byte is waiting, or EOF).
func peekRecv(fd uintptr, buf *[1]byte) syscall.Errno {
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	return e
}
