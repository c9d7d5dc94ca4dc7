package mask

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Result is what masking did, for the report: each masked column with its rule and the
// values it changed, each table rule with its rows, and the time masking cost.
type Result struct {
	Columns  []ColumnResult
	Tables   []TableResult
	Duration time.Duration // the masked tables' load (logical) or the UPDATEs (Apply)
}

// ColumnResult is one masked column.
type ColumnResult struct {
	Column string `json:"column"` // "schema.table.column"
	Rule   string `json:"rule"`   // as written in the config
	Rows   int64  `json:"rows"`   // values changed (NULLs stay NULL and are not counted)
}

// TableResult is one table a table rule applied to.
type TableResult struct {
	Table   string `json:"table"`
	Rule    string `json:"rule"`
	RowsIn  int64  `json:"rows_in"`  // rows of the backup
	RowsOut int64  `json:"rows_out"` // rows kept
}

// Add records what tm did to the table whose data had columns.
func (res *Result) Add(table string, columns []string, tm *TableMasker, r *Rules) {
	for i, c := range columns {
		if rule := tm.rules[i]; rule.Kind != "" && rule.Kind != Keep {
			res.Columns = append(res.Columns, ColumnResult{Column: table + "." + c, Rule: rule.String(), Rows: tm.Changed[i]})
		}
	}
	if tr, ok := r.tables[table]; ok {
		res.Tables = append(res.Tables, TableResult{Table: table, Rule: tr.String(), RowsIn: tm.RowsIn, RowsOut: tm.RowsOut})
	}
}

// CatalogColumns lists the columns of the ordinary, partitioned and foreign tables of
// the database conn is connected to (system schemas left out), with their arrays and
// the tables they inherit from or are partitions of: what Rules.Check takes.
func CatalogColumns(ctx context.Context, conn *pgx.Conn) ([]Column, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname, a.attname, t.typcategory = 'A', c.relkind = 'f',
  ARRAY(SELECT pn.nspname || '.' || pc.relname FROM pg_inherits i JOIN pg_class pc ON pc.oid = i.inhparent
        JOIN pg_namespace pn ON pn.oid = pc.relnamespace WHERE i.inhrelid = c.oid ORDER BY 1)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2, a.attnum`)
	if err != nil {
		return nil, fmt.Errorf("mask: list columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Column, error) {
		var c Column
		err := r.Scan(&c.Schema, &c.Table, &c.Name, &c.Array, &c.Foreign, &c.Parents)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("mask: list columns: %w", err)
	}
	var los bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_largeobject_metadata)").Scan(&los); err != nil {
		return nil, fmt.Errorf("mask: look for large objects: %w", err)
	}
	if los {
		cols = append(cols, LargeObjectData())
	}
	return cols, nil
}

// emptyLargeObjects empties every large object of the database, keeping it (its OID and
// owner) so that references to it hold, and returns how many there were.
func emptyLargeObjects(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DO $$
DECLARE o record;
BEGIN
  FOR o IN SELECT oid, lomowner::regrole AS owner FROM pg_catalog.pg_largeobject_metadata LOOP
    PERFORM pg_catalog.lo_unlink(o.oid);
    PERFORM pg_catalog.lo_create(o.oid);
    EXECUTE format('ALTER LARGE OBJECT %s OWNER TO %s', o.oid, o.owner);
  END LOOP;
END $$`)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("mask: empty the large objects: %w", err)
	}
	return n, nil
}

// ApplyOptions are the per-call options of Apply.
type ApplyOptions struct {
	// TempDir holds the masked rows of one table at a time while they are loaded back
	// ("": os.TempDir()); it never holds an unmasked value.
	TempDir string
}

// Apply masks a restored database in place with SQL, for restores that cannot stream
// through the masker (the physical strategy, on its side cluster before the cutover):
// it checks the database's columns first (Check: nothing is changed when a column lacks
// a decision or a rule names a missing column), then per table, in one transaction with
// session_replication_role = replica (so that foreign keys between hashed columns, each
// hashed alike, hold at the end), truncates it, deletes the rows a sample drops, and
// UPDATEs the masked columns from the same transforms as a logical restore (COPY out,
// masked in Go, COPY into a temporary table). The values are the same as a logical
// restore's with the same key. The table's rules and user triggers are disabled while it
// is masked and put back as they were after (production's rules could turn the UPDATEs
// into nothing, and its triggers copy the old values elsewhere). Then it refreshes every
// populated materialized view (they hold rows computed from production's values) and
// replaces the planner statistics computed from production's values (pg_statistic and
// extended statistics of the masked tables, their parents, every materialized view and
// their indexes) by an ANALYZE of the masked ones. Last, it rewrites (VACUUM FULL) every
// table it changed and those catalogs, so that no old row version, production's values,
// stays in their files. conn must be a superuser's. Until Apply has run, the production
// values are on the server's disk; after it, in the WAL it wrote until a checkpoint
// removes it (the physical strategy switches the WAL and checkpoints right after).
func Apply(ctx context.Context, conn *pgx.Conn, r *Rules, opts ApplyOptions) (*Result, error) {
	start := time.Now()
	cols, err := CatalogColumns(ctx, conn)
	if err != nil {
		return nil, err
	}
	if err := r.Check(cols); err != nil {
		return nil, err
	}
	res := &Result{}
	for _, table := range r.Tables() {
		if err := r.applyTable(ctx, conn, table, cols, opts, res); err != nil {
			return res, fmt.Errorf("mask %s: %w", table, err)
		}
	}
	if r.EmptyLargeObjects() {
		n, err := emptyLargeObjects(ctx, conn)
		if err != nil {
			return res, err
		}
		res.Tables = append(res.Tables, TableResult{Table: LargeObjects, Rule: string(Truncate), RowsIn: n})
	}
	if err := scrub(ctx, conn, r.Tables(), r.EmptyLargeObjects()); err != nil {
		return res, err
	}
	res.Duration = time.Since(start)
	return res, nil
}

// Rewrite removes what UPDATEs and DELETEs made by other SQL than Apply's (a
// post-restore file that masks) left of the values they replaced, as Apply does after
// its own: it refreshes every populated materialized view, replaces the planner
// statistics of tables (and of the relations Apply's would reach) by an ANALYZE of
// their rows as they are now, and rewrites (VACUUM FULL) tables, with their inheritance
// children and partitions, TOAST tables and indexes, and the statistics catalogs, so
// that no old row version stays in their files. tables are "schema.table", unquoted
// as in the rules (one that no longer exists is skipped); none: nothing is done. conn's role must be a superuser or own the
// database, the materialized views and, without a superuser, the statistics are only
// analyzed again (a column with SET STATISTICS 0 keeps its old ones): a relation it may
// not rewrite fails before anything is done (VACUUM would skip it with a warning). The
// WAL written meanwhile still holds the old values until a checkpoint removes it.
func Rewrite(ctx context.Context, conn *pgx.Conn, tables []string) error {
	if len(tables) == 0 {
		return nil
	}
	if err := mayRewrite(ctx, conn, tables); err != nil {
		return err
	}
	return scrub(ctx, conn, tables, false)
}

// mayRewrite fails naming the relations Rewrite would leave as they are because conn's
// role may not rewrite them: a table (with its children) neither it nor the database's
// owner role it has owns, and a populated materialized view it does not own.
func mayRewrite(ctx context.Context, conn *pgx.Conn, tables []string) error {
	rows, err := conn.Query(ctx, withChildren+`
SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace, pg_catalog.pg_database d
WHERE d.datname = current_database() AND NOT pg_has_role(c.relowner, 'USAGE')
  AND ((c.oid IN (SELECT oid FROM rel) AND c.relkind IN ('r', 'm') AND NOT pg_has_role(d.datdba, 'USAGE'))
    OR (c.relkind = 'm' AND c.relispopulated))
ORDER BY 1`, quoteTables(tables))
	if err != nil {
		return fmt.Errorf("mask: privileges to rewrite: %w", err)
	}
	denied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("mask: privileges to rewrite: %w", err)
	}
	if len(denied) > 0 {
		return fmt.Errorf("mask: the role of this session may not rewrite %s (it owns neither them nor the database): their old row versions, or views computed from them, would stay",
			strings.Join(denied, ", "))
	}
	return nil
}

// withChildren starts a query with rel(oid): the tables named in $1 (quoteTables) that
// exist, and their inheritance children and partitions, at any depth.
const withChildren = `
WITH RECURSIVE rel(oid) AS (
  SELECT to_regclass(t)::oid FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL
  UNION
  SELECT i.inhrelid FROM pg_catalog.pg_inherits i JOIN rel ON i.inhparent = rel.oid)`

// quoteTables quotes each "schema.table" of tables for to_regclass.
func quoteTables(tables []string) []string {
	regs := make([]string, len(tables))
	for i, t := range tables {
		regs[i] = quoteTable(t)
	}
	return regs
}

// scrub refreshes the views, replaces the statistics and rewrites tables (and the large
// objects' catalogs, largeObjects), for Apply and Rewrite.
func scrub(ctx context.Context, conn *pgx.Conn, tables []string, largeObjects bool) error {
	if len(tables) > 0 {
		if err := refreshViews(ctx, conn); err != nil {
			return err
		}
		if err := resetStatistics(ctx, conn, tables); err != nil {
			return err
		}
	}
	return rewrite(ctx, conn, tables, largeObjects)
}

// rewrite rewrites with VACUUM FULL every table Apply changed (tables, their
// inheritance children and partitions, with their TOAST tables and indexes), the
// planner statistics' catalogs and, when their data was emptied, the large objects'
// (largeObjects): an UPDATE or DELETE leaves the old row versions, production's values,
// in the table's pages and indexes, where a page inspector (or anyone reading the
// files) finds them until VACUUM reuses the space. A rewrite writes only the live rows
// into new files and truncates the old ones at once.
func rewrite(ctx context.Context, conn *pgx.Conn, tables []string, largeObjects bool) error {
	if len(tables) == 0 && !largeObjects {
		return nil // nothing changed, the statistics neither
	}
	rows, err := conn.Query(ctx, withChildren+`
SELECT format('%I.%I', n.nspname, c.relname) FROM rel
JOIN pg_catalog.pg_class c ON c.oid = rel.oid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm') ORDER BY 1`, quoteTables(tables))
	if err != nil {
		return fmt.Errorf("mask: list the tables to rewrite: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("mask: list the tables to rewrite: %w", err)
	}
	if len(tables) > 0 { // resetStatistics replaced their rows
		names = append(names, "pg_catalog.pg_statistic", "pg_catalog.pg_statistic_ext_data")
	}
	if largeObjects {
		names = append(names, "pg_catalog.pg_largeobject", "pg_catalog.pg_largeobject_metadata")
	}
	slices.Sort(names)
	for _, name := range slices.Compact(names) {
		if _, err := conn.Exec(ctx, "VACUUM (FULL) "+name); err != nil {
			return fmt.Errorf("mask: rewrite %s: %w", name, err)
		}
	}
	return nil
}

// refreshViews refreshes every populated materialized view, each after the ones it
// reads (through views too): a restored cluster's views hold the rows they were
// refreshed from, production's, and a query of one can reach the masked tables through
// a function that no catalog dependency shows.
func refreshViews(ctx context.Context, conn *pgx.Conn) error {
	rows, err := conn.Query(ctx, `
WITH RECURSIVE reads(mv, rel) AS (
  SELECT rw.ev_class, d.refobjid FROM pg_rewrite rw
  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid AND d.refclassid = 'pg_class'::regclass
  WHERE rw.ev_class IN (SELECT oid FROM pg_class WHERE relkind = 'm') AND d.refobjid <> rw.ev_class
  UNION
  SELECT reads.mv, d.refobjid FROM reads
  JOIN pg_class v ON v.oid = reads.rel AND v.relkind = 'v'
  JOIN pg_rewrite rw ON rw.ev_class = v.oid
  JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid AND d.refclassid = 'pg_class'::regclass
  WHERE d.refobjid <> v.oid)
SELECT c.oid::int8, format('%I.%I', n.nspname, c.relname),
  ARRAY(SELECT DISTINCT r.rel::int8 FROM reads r JOIN pg_class m ON m.oid = r.rel AND m.relkind = 'm' WHERE r.mv = c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND c.relispopulated ORDER BY c.oid`)
	if err != nil {
		return fmt.Errorf("mask: list materialized views: %w", err)
	}
	type view struct {
		oid   int64
		name  string
		reads []int64
	}
	views, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (view, error) {
		var v view
		err := r.Scan(&v.oid, &v.name, &v.reads)
		return v, err
	})
	if err != nil {
		return fmt.Errorf("mask: list materialized views: %w", err)
	}
	done := map[int64]bool{}
	for len(done) < len(views) {
		progress := false
		for _, v := range views {
			ready := !done[v.oid]
			for _, o := range v.reads {
				ready = ready && (done[o] || !slices.ContainsFunc(views, func(w view) bool { return w.oid == o }))
			}
			if !ready {
				continue
			}
			if _, err := conn.Exec(ctx, "REFRESH MATERIALIZED VIEW "+v.name); err != nil {
				return fmt.Errorf("mask: refresh materialized view %s: %w", v.name, err)
			}
			done[v.oid], progress = true, true
		}
		if !progress {
			return errors.New("mask: materialized views that read each other")
		}
	}
	return nil
}

// resetStatistics drops the planner statistics computed from production's values and
// computes them again from the masked ones: pg_statistic (most common values, histogram
// bounds: pg_stats shows them to whoever may read the column) of the masked tables, of
// the tables they inherit from or are partitions of (their inherited statistics read
// them), of every materialized view, and of these relations' indexes (expressions),
// and the extended statistics on them (pg_statistic_ext_data: most common values). It
// deletes rather than relies on ANALYZE to overwrite: ANALYZE keeps what it skips (a
// column with SET STATISTICS 0); a role without superuser rights (Rewrite as the
// database's owner) cannot delete, and only analyzes.
func resetStatistics(ctx context.Context, conn *pgx.Conn, tables []string) error {
	quoted := quoteTables(tables)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
CREATE TEMPORARY TABLE restage_mask_stats ON COMMIT DROP AS
WITH RECURSIVE up(rel) AS (
  SELECT to_regclass(t)::oid FROM unnest($1::text[]) t WHERE to_regclass(t) IS NOT NULL
  UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON up.rel = i.inhrelid)
SELECT rel FROM up UNION SELECT oid FROM pg_class WHERE relkind = 'm'`, quoted); err != nil {
			return fmt.Errorf("mask: statistics: %w", err)
		}
		var super bool
		if err := tx.QueryRow(ctx, "SELECT current_setting('is_superuser') = 'on'").Scan(&super); err != nil {
			return fmt.Errorf("mask: statistics: %w", err)
		}
		var drops []string
		if super { // else Rewrite as the database's owner: only the ANALYZE below
			drops = []string{
				`DELETE FROM pg_catalog.pg_statistic WHERE starelid IN (SELECT rel FROM restage_mask_stats
  UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT rel FROM restage_mask_stats))`,
				`DELETE FROM pg_catalog.pg_statistic_ext_data WHERE stxoid IN (SELECT oid FROM pg_statistic_ext
  WHERE stxrelid IN (SELECT rel FROM restage_mask_stats))`,
			}
		}
		for _, q := range drops {
			if _, err := tx.Exec(ctx, q); err != nil {
				return fmt.Errorf("mask: drop production's statistics: %w", err)
			}
		}
		rows, err := tx.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN (SELECT rel FROM restage_mask_stats) AND (c.relkind <> 'm' OR c.relispopulated) ORDER BY 1`)
		if err != nil {
			return fmt.Errorf("mask: statistics: %w", err)
		}
		rels, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("mask: statistics: %w", err)
		}
		if _, err := tx.Exec(ctx, "ANALYZE "+strings.Join(rels, ", ")); err != nil {
			return fmt.Errorf("mask: analyze the masked tables: %w", err)
		}
		return nil
	})
}

// applyTable masks one table in its own transaction.
func (r *Rules) applyTable(ctx context.Context, conn *pgx.Conn, table string, all []Column, opts ApplyOptions, res *Result) error {
	var names []string
	var cols []Column
	for _, c := range all {
		if c.TableKey() == table {
			cols = append(cols, c)
		}
	}
	// The columns COPY (and pg_dump) carry: not generated ones.
	rows, err := conn.Query(ctx, `SELECT a.attname FROM pg_attribute a WHERE a.attrelid = $1::regclass
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`, quoteTable(table))
	if err != nil {
		return err
	}
	if names, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}
	tm, err := r.Masker(table, names, cols)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		restore, err := quiet(ctx, tx, table)
		if err != nil {
			return err
		}
		if err := r.maskRows(ctx, tx, table, names, tm, opts, res); err != nil {
			return err
		}
		for _, stmt := range restore {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
}

// quiet disables, for the rest of tx, the rules and the user triggers of table, and
// returns the statements that put each back as it was. Apply's UPDATE and DELETE
// statements are not production's: a rule (DO INSTEAD NOTHING, a soft delete) would
// leave the production values where they are, and a rule or a trigger that
// session_replication_role = replica does not stop (ENABLE ALWAYS, ENABLE REPLICA), or
// any user trigger of a truncate's DELETE, could copy them into another table, one
// masked before. Foreign keys' triggers are internal and stay.
func quiet(ctx context.Context, tx pgx.Tx, table string) ([]string, error) {
	rows, err := tx.Query(ctx, `
SELECT true, tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal
UNION ALL
SELECT false, rulename, ev_enabled::text FROM pg_rewrite WHERE ev_class = $1::regclass AND rulename <> '_RETURN'`,
		quoteTable(table))
	if err != nil {
		return nil, err
	}
	type object struct {
		trigger       bool
		name, enabled string
	}
	objects, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (object, error) {
		var o object
		err := r.Scan(&o.trigger, &o.name, &o.enabled)
		return o, err
	})
	if err != nil {
		return nil, err
	}
	var restore []string
	for _, o := range objects {
		what := "RULE "
		if o.trigger {
			what = "TRIGGER "
		}
		name := what + pgx.Identifier{o.name}.Sanitize()
		if _, err := tx.Exec(ctx, "ALTER TABLE "+quoteTable(table)+" DISABLE "+name); err != nil {
			return nil, fmt.Errorf("disable %s: %w", strings.ToLower(name), err)
		}
		how := map[string]string{"O": "ENABLE ", "A": "ENABLE ALWAYS ", "R": "ENABLE REPLICA ", "D": "DISABLE "}[o.enabled]
		if how == "" {
			return nil, fmt.Errorf("%s: unknown state %q", strings.ToLower(name), o.enabled)
		}
		restore = append(restore, "ALTER TABLE "+quoteTable(table)+" "+how+name)
	}
	return restore, nil
}

// maskRows masks the rows of table in tx, its rules and triggers quiet.
func (r *Rules) maskRows(ctx context.Context, tx pgx.Tx, table string, names []string, tm *TableMasker, opts ApplyOptions, res *Result) error {
	if tm.none {
		// Foreign keys stay checked: truncating a referenced table fails, as it does
		// when a logical restore adds the constraint after the data. Only the table's
		// own rows: its children have their own decisions (Check makes them strict),
		// and their triggers, not disabled here, would see theirs deleted.
		tag, err := tx.Exec(ctx, "DELETE FROM ONLY "+quoteTable(table))
		if err != nil {
			return err
		}
		tm.RowsIn = tag.RowsAffected()
		res.Add(table, names, tm, r)
		return nil
	}
	if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		return err
	}
	f, err := os.CreateTemp(opts.TempDir, "restage-mask-*.copy")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Rows out with their ctid in front; the masked ones (and the ctids of the rows
	// a sample drops) into the file.
	list := make([]string, len(names))
	for i, n := range names {
		list[i] = pgx.Identifier{n}.Sanitize()
	}
	w := &rowWriter{tm: tm, out: bufio.NewWriterSize(f, 256<<10)}
	sel := "COPY (SELECT ctid, " + strings.Join(list, ", ") + " FROM ONLY " + quoteTable(table) + ") TO STDOUT"
	if _, err := tx.Conn().PgConn().CopyTo(ctx, w, sel); err != nil {
		return err
	}
	if err := w.finish(); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	var masked []string
	for i, n := range names {
		if rule := tm.rules[i]; rule.Kind != "" && rule.Kind != Keep {
			masked = append(masked, n)
		}
	}
	tmp := "restage_mask_rows"
	def := "row_id tid, dropped boolean"
	for i := range masked {
		def += fmt.Sprintf(", c%d text", i)
	}
	if _, err := tx.Exec(ctx, "CREATE TEMPORARY TABLE "+tmp+" ("+def+") ON COMMIT DROP"); err != nil {
		return err
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, f, "COPY "+tmp+" FROM STDIN"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM ONLY "+quoteTable(table)+" t USING "+tmp+" m WHERE m.dropped AND t.ctid = m.row_id"); err != nil {
		return err
	}
	if len(masked) > 0 {
		var set []string
		for i, n := range masked {
			set = append(set, fmt.Sprintf("%s = m.c%d::%s", pgx.Identifier{n}.Sanitize(), i, columnType(ctx, tx, table, n)))
		}
		if _, err := tx.Exec(ctx, "UPDATE ONLY "+quoteTable(table)+" t SET "+strings.Join(set, ", ")+" FROM "+tmp+
			" m WHERE NOT m.dropped AND t.ctid = m.row_id"); err != nil {
			return err
		}
	}
	res.Add(table, names, tm, r)
	return nil
}

// columnType returns the SQL type of a column, for the cast from the temporary table's text.
func columnType(ctx context.Context, tx pgx.Tx, table, column string) string {
	var t string
	err := tx.QueryRow(ctx, `SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = $1::regclass AND attname = $2`, quoteTable(table), column).Scan(&t)
	if err != nil {
		return "text"
	}
	return t
}

// quoteTable quotes "schema.table".
func quoteTable(table string) string {
	s, t, _ := strings.Cut(table, ".")
	return pgx.Identifier{s, t}.Sanitize()
}

// rowWriter turns COPY rows "ctid<TAB>columns..." into rows of the temporary table:
// the ctid, whether the row is dropped, and the masked columns' values.
type rowWriter struct {
	tm      *TableMasker
	out     *bufio.Writer
	partial []byte
	row     []byte
	rec     []byte
}

func (w *rowWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.partial = append(w.partial, p...)
			break
		}
		line := p[:i]
		if len(w.partial) > 0 {
			w.partial = append(w.partial, line...)
			line = w.partial
		}
		if err := w.line(line); err != nil {
			return 0, err
		}
		w.partial = w.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (w *rowWriter) line(line []byte) error {
	tab := bytes.IndexByte(line, '\t')
	if tab < 0 {
		return fmt.Errorf("%w: row without ctid", ErrCopy)
	}
	ctid, data := line[:tab], line[tab+1:]
	var keep bool
	var err error
	if w.row, keep, err = w.tm.Row(w.row[:0], data); err != nil {
		return err
	}
	w.rec = append(w.rec[:0], ctid...)
	if !keep {
		w.rec = append(w.rec, "\tt"...)
		for i := range w.tm.rules {
			if k := w.tm.rules[i].Kind; k != "" && k != Keep {
				w.rec = append(w.rec, "\t\\N"...)
			}
		}
	} else {
		w.rec = append(w.rec, "\tf"...)
		fields := splitFields(w.row[:len(w.row)-1])
		for i, f := range fields {
			if k := w.tm.rules[i].Kind; k != "" && k != Keep {
				w.rec = append(w.rec, '\t')
				w.rec = append(w.rec, f...)
			}
		}
	}
	w.rec = append(w.rec, '\n')
	_, err = w.out.Write(w.rec)
	return err
}

func (w *rowWriter) finish() error {
	if len(w.partial) > 0 {
		if err := w.line(w.partial); err != nil {
			return err
		}
	}
	return w.out.Flush()
}

func splitFields(row []byte) [][]byte {
	var out [][]byte
	for {
		i := bytes.IndexByte(row, '\t')
		if i < 0 {
			return append(out, row)
		}
		out = append(out, row[:i])
		row = row[i+1:]
	}
}
