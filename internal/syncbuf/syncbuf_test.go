package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

// Writers at once lose nothing and never mix inside one Write (run with -race too).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	const writers, lines = 8, 200
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := strings.Repeat(string(rune('a'+w)), 40) + "\n"
			for range lines {
				b.Write([]byte(line))
			}
		}()
	}
	wg.Wait()
	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines, want %d", len(got), writers*lines)
	}
	for _, l := range got {
		if len(l) != 40 || strings.Count(l, l[:1]) != 40 {
			t.Fatalf("mixed line %q", l)
		}
	}
}
