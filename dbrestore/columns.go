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
	// Large objects are in no table and not in the schema's text: the list shows them.
	t, err := listTOC(ctx, c.cfg, b.Path)
	if err != nil {
		return nil, err
	}
	if t.largeObjects() {
		cols = append(cols, mask.LargeObjectData())
	}
	return cols, nil
}

// largeObjects reports whether the dump holds large objects.
func (t *toc) largeObjects() bool {
	for _, e := range t.entries {
		if isLargeObject(e.desc) {
			return true
		}
	}
	return false
}

// isLargeObject reports whether a list entry of that description is a large object's
// (its metadata, BLOB, or the data of them all, BLOBS; newer pg_dumps group them).
func isLargeObject(desc string) bool {
	switch desc {
	case "BLOB", "BLOBS", "BLOB METADATA", "LARGE OBJECT":
		return true
	}
	return false
}
