// Package syncbuf is a bytes.Buffer that goroutines may write to at once, for tests
// that capture what a logger or a child process writes while code under test runs:
//
//	var out syncbuf.Buffer
//	logger := slog.New(slog.NewTextHandler(&out, nil))
//	... // goroutines log
//	if !strings.Contains(out.String(), "job started") { ... }
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is a bytes.Buffer safe for concurrent use. The zero value is empty and ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
