//go:build !unix

package fakehost

import (
	"os"
	"os/exec"
)

func setProcessGroup(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return cmd.Process.Kill()
}

func termGroup(cmd *exec.Cmd) { _ = killGroup(cmd) }

func signalOf(*os.ProcessState) int { return 0 }
