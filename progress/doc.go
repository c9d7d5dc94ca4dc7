// Package progress carries a long operation's progress, in bytes, from the part doing
// the work (hashing a backup, copying a release, cloning a database) to whoever follows
// the run, through the context:
//
//	ctx = progress.With(ctx, func(done, total int64) { ... })
//	...
//	r := progress.Reader(ctx, f, size) // reports as it is read
//
// A part that cannot tell its progress reports nothing; a context without a function
// makes every call here a no-op, so the parts need no other wiring.
package progress
