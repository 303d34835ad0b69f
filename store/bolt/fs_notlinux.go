//go:build !linux

package bolt

import "os"

// syncData flushes f; fsync where fdatasync is not offered.
func syncData(f *os.File) error { return f.Sync() }
