package progress_test

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"

	"github.com/restage/restage/progress"
)

type seen struct {
	mu    sync.Mutex
	calls [][2]int64
}

func (s *seen) fn(done, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, [2]int64{done, total})
}

func TestReaderReportsBytesRead(t *testing.T) {
	var s seen
	ctx := progress.With(context.Background(), s.fn)
	data := bytes.Repeat([]byte("x"), 10000)
	r := progress.Reader(ctx, iotestHalfReader{bytes.NewReader(data)}, int64(len(data)))
	if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(data)) {
		t.Fatalf("copy: %d, %v", n, err)
	}
	if len(s.calls) < 2 {
		t.Fatalf("calls %v, want one per read", s.calls)
	}
	last := s.calls[len(s.calls)-1]
	if last != [2]int64{10000, 10000} {
		t.Errorf("last report %v, want 10000 of 10000", last)
	}
	for i := 1; i < len(s.calls); i++ {
		if s.calls[i][0] < s.calls[i-1][0] {
			t.Errorf("progress went back: %v", s.calls)
		}
	}
}

func TestWithoutFunctionNothingIsWrapped(t *testing.T) {
	r := bytes.NewReader(nil)
	if got := progress.Reader(context.Background(), r, 0); got != io.Reader(r) {
		t.Error("Reader wrapped a reader though the context carries no function")
	}
	var c *progress.Counter = progress.NewCounter(context.Background(), 5)
	c.Add(3) // a nil counter is a no-op
	c.Set(4)
	if c.Done() != 0 {
		t.Error("nil counter counted")
	}
}

func TestCounterSetNeverGoesBackAndAddIsSafeConcurrently(t *testing.T) {
	var s seen
	c := progress.NewCounter(progress.With(context.Background(), s.fn), 0)
	c.Set(100)
	c.Set(50)
	if c.Done() != 100 || len(s.calls) != 1 {
		t.Fatalf("done %d, calls %v: a lower Set must be ignored", c.Done(), s.calls)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				c.Add(1)
			}
		})
	}
	wg.Wait()
	if c.Done() != 8100 {
		t.Errorf("done %d, want 8100", c.Done())
	}
}

// iotestHalfReader reads at most half of what is asked, so that a copy takes many reads.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) { return h.r.Read(p[:(len(p)+1)/2]) }

func TestWithoutDropsTheFunction(t *testing.T) {
	var s seen
	ctx := progress.With(context.Background(), s.fn)
	if progress.From(progress.Without(ctx)) != nil {
		t.Fatal("Without kept the function")
	}
	progress.NewCounter(progress.Without(ctx), 10).Add(5)
	if len(s.calls) != 0 {
		t.Fatalf("reported %v", s.calls)
	}
}
