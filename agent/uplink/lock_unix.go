//go:build unix

package uplink

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on path, creating the file if
// create is set; errLocked means another process holds it. The lock lasts
// until the returned file is closed, or the process dies.
func lockFile(path string, create bool) (io.Closer, error) {
	flag := os.O_RDWR
	if create {
		flag |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f, nil
}
