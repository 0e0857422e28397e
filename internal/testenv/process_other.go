//go:build !linux

package testenv

import "os/exec"

func setProcAttr(*exec.Cmd) {}

func raiseFileLimit(int) {}
