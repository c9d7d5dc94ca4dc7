package progress

import (
	"context"
	"io"
	"sync"
)

// Func receives progress: done of total bytes (total 0: not known). It is called from
// the goroutine doing the work, possibly from several at once; it must return quickly.
type Func func(done, total int64)

type key struct{}

// With returns a context whose operations report their progress to fn.
func With(ctx context.Context, fn Func) context.Context {
	if fn == nil {
		return ctx
	}
	return context.WithValue(ctx, key{}, fn)
}

// From returns the function ctx carries, nil when none.
func From(ctx context.Context) Func {
	fn, _ := ctx.Value(key{}).(Func)
	return fn
}

// Without returns ctx without a function: for work that runs beside the operation
// whose bytes ctx counts.
func Without(ctx context.Context) context.Context {
	if From(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, key{}, Func(nil))
}

// Counter adds up the bytes of one operation, from any number of goroutines, and
// reports the sum to its context's function. The zero of a nil *Counter is usable and
// reports nothing.
type Counter struct {
	mu    sync.Mutex
	fn    Func
	done  int64
	total int64
}

// NewCounter returns a counter of total bytes (0: not known) reporting to ctx's
// function; nil when ctx carries none.
func NewCounter(ctx context.Context, total int64) *Counter {
	fn := From(ctx)
	if fn == nil {
		return nil
	}
	return &Counter{fn: fn, total: total}
}

// Add counts n more bytes done and reports the sum.
func (c *Counter) Add(n int64) {
	if c == nil || n == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += n
	c.fn(c.done, c.total)
}

// Set reports done bytes, when the work counts its own (e.g. read from /proc). A value
// below what was reported is ignored: progress never goes back.
func (c *Counter) Set(done int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if done <= c.done {
		return
	}
	c.done = done
	c.fn(c.done, c.total)
}

// Done returns the bytes counted so far.
func (c *Counter) Done() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// Total returns the bytes in all, as given to NewCounter (0: not known).
func (c *Counter) Total() int64 {
	if c == nil {
		return 0
	}
	return c.total
}

// Reader returns r counting what is read from it into a new counter of total bytes
// for ctx; r itself when ctx carries no function.
func Reader(ctx context.Context, r io.Reader, total int64) io.Reader {
	c := NewCounter(ctx, total)
	if c == nil {
		return r
	}
	return CountingReader(r, c)
}

// CountingReader returns r counting what is read from it into c.
func CountingReader(r io.Reader, c *Counter) io.Reader {
	if c == nil {
		return r
	}
	return &reader{r: r, c: c}
}

type reader struct {
	r io.Reader
	c *Counter
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.c.Add(int64(n))
	return n, err
}
