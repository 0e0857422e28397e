//go:build !unix

package uplink

import (
	"io"
	"os"
)

// lockFile cannot lock without flock: it creates its own lock file, and
// reports every other one as held, so directories of earlier runs are
// left for the operator rather than taken from a live process.
func lockFile(path string, create bool) (io.Closer, error) {
	if !create {
		return nil, errLocked
	}
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}
