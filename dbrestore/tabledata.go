package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// maxTableRows bounds what TableRows reads: it is meant for small tables such as a
// migrations table, not for data.
const maxTableRows = 10000

// TableRows reads the rows of a small table straight from b's dump, without restoring it
// (pg_restore --data-only --table): e.g. the schema version of production's migrations
// table, for a dry run. table is "name" or "schema.name" (unquoted); each row is its
// columns as COPY's text, NULL as nil. A table the dump does not hold is ErrNoTable; a
// table of more than 10000 rows is an error.
func (c *DirCatalog) TableRows(ctx context.Context, b *Backup, table string) ([][]*string, error) {
	if b == nil {
		return nil, errors.New("dbrestore: TableRows needs a backup")
	}
	schemaName, name, qualified := strings.Cut(table, ".")
	if !qualified {
		schemaName, name = "", table
	}
	if name == "" || strings.ContainsAny(table, "\"\x00\n") || strings.Contains(name, ".") {
		return nil, fmt.Errorf("dbrestore: TableRows: bad table name %q: want name or schema.name", table)
	}
	bin, err := c.cfg.tool("pg_restore")
	if err != nil {
		return nil, err
	}
	args := []string{"--data-only", "--table=" + name, "--file=-"}
	if qualified {
		args = append(args, "--schema="+schemaName)
	}
	args = append(args, b.Path)
	var (
		rows    [][]*string
		inCopy  bool
		copies  int
		tooMany bool
	)
	p := &proc{path: bin, args: args, stdout: func(line string) {
		switch {
		case !inCopy && strings.HasPrefix(line, "COPY ") && strings.HasSuffix(line, " FROM stdin;"):
			inCopy = true
			copies++
		case inCopy && line == `\.`:
			inCopy = false
		case inCopy && copies == 1:
			if len(rows) == maxTableRows {
				tooMany = true
				return
			}
			rows = append(rows, copyFields(line))
		}
	}}
	if err := p.run(ctx); err != nil {
		return nil, fmt.Errorf("dbrestore: read table %s from %s: %w", table, b.Name(), err)
	}
	switch {
	case copies == 0:
		return nil, fmt.Errorf("dbrestore: %s: %w: %s", b.Name(), ErrNoTable, table)
	case copies > 1:
		return nil, fmt.Errorf("dbrestore: %s: %d tables named %s; name the schema too", b.Name(), copies, table)
	case tooMany:
		return nil, fmt.Errorf("dbrestore: %s: table %s has more than %d rows", b.Name(), table, maxTableRows)
	}
	return rows, nil
}

// copyFields splits one line of COPY's text format into its columns, undoing its
// escapes; \N is NULL (nil).
func copyFields(line string) []*string {
	var out []*string
	for _, f := range strings.Split(line, "\t") {
		if f == `\N` {
			out = append(out, nil)
			continue
		}
		if !strings.Contains(f, `\`) {
			out = append(out, &f)
			continue
		}
		var sb strings.Builder
		for i := 0; i < len(f); i++ {
			if f[i] != '\\' || i+1 == len(f) {
				sb.WriteByte(f[i])
				continue
			}
			i++
			switch f[i] {
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'v':
				sb.WriteByte('\v')
			default: // \\ and any other escaped character (COPY writes no octal or hex)
				sb.WriteByte(f[i])
			}
		}
		s := sb.String()
		out = append(out, &s)
	}
	return out
}
