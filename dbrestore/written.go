package dbrestore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Writes follows which tables the SQL run in one transaction updates or deletes rows
// of: each such row leaves its old version, the value the SQL replaced (production's,
// for a post-restore file that masks), in the table's pages and indexes until the
// table is rewritten (VACUUM FULL). Make it with WatchWrites before the SQL runs.
type Writes struct {
	tx  pgx.Tx
	xid string
}

// WatchWrites starts following the writes of tx's transaction.
func WatchWrites(ctx context.Context, tx pgx.Tx) (*Writes, error) {
	w := &Writes{tx: tx}
	if err := tx.QueryRow(ctx, "SELECT txid_current()::text").Scan(&w.xid); err != nil {
		return nil, fmt.Errorf("dbrestore: transaction id: %w", err)
	}
	return w, nil
}

// Tables returns the tables ("schema.table", unquoted; temporary ones left out) whose
// rows the transaction has updated or deleted so far (pg_stat_xact_user_tables). When
// the SQL ended the transaction itself (a COMMIT in a file), what it wrote before is no
// longer known, and every table of the database is returned.
func (w *Writes) Tables(ctx context.Context) ([]string, error) {
	var xid string
	if w.tx.Conn().PgConn().TxStatus() == 'T' {
		if err := w.tx.QueryRow(ctx, "SELECT txid_current()::text").Scan(&xid); err != nil {
			return nil, fmt.Errorf("dbrestore: transaction id: %w", err)
		}
	}
	q := `SELECT schemaname || '.' || relname FROM pg_catalog.pg_stat_xact_user_tables
WHERE n_tup_upd + n_tup_del > 0 AND schemaname NOT LIKE 'pg\_temp\_%' ORDER BY 1`
	if xid != w.xid {
		q = `SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't' AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1`
	}
	rows, err := w.tx.Conn().Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: tables written: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("dbrestore: tables written: %w", err)
	}
	return tables, nil
}
