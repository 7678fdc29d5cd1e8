package store

import (
	"os"

	"golang.org/x/sys/windows"
)

// The whole file is never locked: one byte at offset 0 is the lock (a
// LockFileEx range; the byte need not exist).
const lockBytes = 1

func openLockFile(path string) (*os.File, error) {
	// Go opens files non-inheritable on Windows: a child never holds it.
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
}

func lockFile(f *os.File, flags uint32) error {
	ol := new(windows.Overlapped)
	return windows.LockFileEx(windows.Handle(f.Fd()), flags|windows.LOCKFILE_EXCLUSIVE_LOCK, 0, lockBytes, 0, ol)
}

func tryLock(f *os.File) error { return lockFile(f, windows.LOCKFILE_FAIL_IMMEDIATELY) }

// waitLock blocks in the kernel until the lock is granted (the handle is
// synchronous, so LockFileEx waits).
func waitLock(f *os.File) error { return lockFile(f, 0) }

func unlock(f *os.File) {
	ol := new(windows.Overlapped)
	_ = windows.UnlockFileEx(windows.Handle(f.Fd()), 0, lockBytes, 0, ol)
}

// SyncDir is a no-op on Windows: a directory handle cannot be flushed
// (FlushFileBuffers needs write access to a file), and NTFS journals the
// rename itself.
func SyncDir(dir string) error { return nil }
