//go:build (linux && 386) || solaris || illumos

package remote

import (
	"errors"
	"syscall"
)

// peekRecv is h1peek_raw.go's for systems without a recvfrom system call
// of its own (linux/386 reaches it through socketcall; solaris and
// illumos through libc): syscall.Recvfrom, which MSG_DONTWAIT keeps from
// blocking as well.
func peekRecv(fd uintptr, buf *[1]byte) syscall.Errno {
	_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	var e syscall.Errno
	if err != nil && !errors.As(err, &e) {
		return syscall.EIO // not an errno: count the connection as not usable
	}
	return e
}
