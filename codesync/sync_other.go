//go:build !linux

package codesync

import "github.com/restage/restage/internal/atomicfile"

// syncFS flushes the release under dir to disk. Without Linux's syncfs(2) it fsyncs each
// of the release's files and folders (slower for a large tree; hard-linked files are
// synced again, which costs little).
func syncFS(dir string) error { return atomicfile.SyncTree(dir) }
