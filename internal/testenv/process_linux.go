//go:build linux

package testenv

import (
	"os/exec"
	"syscall"

	"golang.org/x/sys/unix"
)

// setProcAttr makes the kernel kill the service if the test binary dies
// (e.g. on a `go test -timeout` panic), so no broker outlives its test.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// raiseFileLimit gives the child the hard RLIMIT_NOFILE as its soft limit.
// Go raises its own soft limit at start-up but restores the original one
// (often 1024) in children, which would cap a load test's broker
// connections. It runs before the service accepts connections.
func raiseFileLimit(pid int) {
	var lim unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &lim); err != nil || lim.Cur >= lim.Max {
		return
	}
	lim.Cur = lim.Max
	_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &lim, nil)
}
