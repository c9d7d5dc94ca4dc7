package dbrestore

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestTableRowsReadsASmallTableFromTheDump(t *testing.T) {
	prod, _ := servers(t)
	db := prod.Database(t)
	prod.Exec(t, db, `
CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL);
INSERT INTO schema_migrations VALUES (42, false);
CREATE SCHEMA other;
CREATE TABLE other.notes (id int, body text);
INSERT INTO other.notes VALUES (1, E'tab\there, newline\nthere, back\\slash'), (2, NULL);
CREATE TABLE public.notes (id int);`)
	for _, format := range []string{"custom", "directory"} {
		t.Run(format, func(t *testing.T) {
			opts := DumpOptions{}
			if format == "directory" {
				opts.Jobs = 2
			}
			b := dumpOf(t, prod, db, opts)
			cat, err := NewCatalog(filepath.Dir(b.Path), Config{})
			if err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t)
			rows, err := cat.TableRows(ctx, b, "schema_migrations")
			if err != nil || len(rows) != 1 || *rows[0][0] != "42" || *rows[0][1] != "f" {
				t.Fatalf("schema_migrations: %v %v", rows, err)
			}
			rows, err = cat.TableRows(ctx, b, "other.notes")
			if err != nil || len(rows) != 2 {
				t.Fatalf("other.notes: %v %v", rows, err)
			}
			if got := *rows[0][1]; got != "tab\there, newline\nthere, back\\slash" {
				t.Errorf("escapes: %q", got)
			}
			if rows[1][1] != nil {
				t.Errorf("NULL read as %q", *rows[1][1])
			}
			if _, err := cat.TableRows(ctx, b, "notes"); err == nil || !strings.Contains(err.Error(), "name the schema") {
				t.Errorf("two tables named notes: %v", err)
			}
			if _, err := cat.TableRows(ctx, b, "missing"); !errors.Is(err, ErrNoTable) {
				t.Errorf("missing table: %v", err)
			}
			if _, err := cat.TableRows(ctx, b, `a"b`); err == nil {
				t.Error("a quoted name was taken")
			}
		})
	}
}
