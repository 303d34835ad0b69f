//go:build linux || darwin || freebsd

package bolt

import "syscall"

// freeBytes is the space an unprivileged writer may still use on path's file system.
func freeBytes(path string) (uint64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, false
	}
	return uint64(st.Bavail) * uint64(st.Bsize), true
}
