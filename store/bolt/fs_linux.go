package bolt

import (
	"os"
	"syscall"
)

// syncData flushes f's data and what reading it back needs (its size, its blocks), not
// its times: fdatasync, as bbolt's own commits do.
func syncData(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
