package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/restage/restage/dbrestore/mask"
)

// Columns reads the columns of the tables of b's dump from its schema (pg_restore
// --schema-only --section=pre-data -f -), without restoring anything: what the masking
// check of a dry run, and of a run before it changes anything, looks at.
func (c *DirCatalog) Columns(ctx context.Context, b *Backup) ([]mask.Column, error) {
	if b == nil {
		return nil, errors.New("dbrestore: Columns needs a backup")
	}
	bin, err := c.cfg.tool("pg_restore")
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	p := &proc{path: bin, args: []string{"--schema-only", "--section=pre-data", "--file=-", b.Path}, stdoutTo: pw}
	done := make(chan error, 1)
	go func() {
		err := p.run(ctx)
		pw.CloseWithError(err)
		done <- err
	}()
	cols, perr := mask.ParseSchema(pr)
	_, _ = io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		return nil, fmt.Errorf("dbrestore: read the schema of %s: %w", b.Name(), err)
	}
	if perr != nil {
		return nil, fmt.Errorf("dbrestore: read the schema of %s: %w", b.Name(), perr)
	}
	return cols, nil
}
