package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore/mask"
)

// maskedRestore restores into the target with opts.Mask applied while the data loads,
// so that no masked production value is ever written to the staging server:
//
//  1. pre-data (tables, types, functions) by pg_restore;
//  2. the check: every column the rules classify as personal, and every column of a
//     strict table, has a decision, and every rule names a column the backup holds
//     (mask.ErrUnmasked, mask.ErrRule) — before any row is loaded;
//  3. at once: the data of the tables with rules, each streamed `pg_restore --data-only
//     -L <its entry> -f -` → mask.Stream → COPY FROM STDIN through pgx (truncated ones
//     skipped), and by pg_restore -j the other tables' data with the post-data items
//     (indexes, constraints, triggers, materialized view data) that depend on no masked
//     table, as pg_restore -j would interleave them;
//  4. the post-data items that depend on a masked table (its indexes, foreign keys to
//     and from it, and what depends on those), by pg_restore -j, once its data is in.
func (r *restoreRun) maskedRestore(ctx context.Context, pgRestore string) error {
	s, opts := r.s, r.opts
	start := time.Now()
	s.log.Info("dbrestore: masked restore started", logBackup(r.b), logKeyTarget, opts.Target, "jobs", opts.Jobs,
		"masked_tables", len(opts.Mask.Tables()))
	if err := r.runPgRestore(ctx, pgRestore, "pre-data", append(r.useList(), "--section=pre-data")...); err != nil {
		return err
	}
	cols, emptied, err := r.checkMask(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "restage-restore-")
	if err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	defer os.RemoveAll(dir)
	masked, firstList, afterList, err := r.writeLists(ctx, pgRestore, dir)
	if err != nil {
		return err
	}

	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var dataErr error
	wg.Go(func() {
		if dataErr = r.runPgRestore(cctx, pgRestore, "data and post-data of the other tables",
			"--section=data", "--section=post-data", "--use-list="+firstList); dataErr != nil {
			cancel(dataErr)
		}
	})
	mstart := time.Now()
	res, maskErr := r.loadMasked(cctx, pgRestore, dir, masked, cols)
	if maskErr != nil {
		cancel(maskErr)
	}
	wg.Wait()
	if err := errors.Join(maskErr, dataErr); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return err
	}
	res.Duration = time.Since(mstart)
	if opts.Mask.EmptyLargeObjects() {
		res.Tables = append(res.Tables, mask.TableResult{Table: mask.LargeObjects, Rule: string(mask.Truncate), RowsIn: emptied})
	}
	r.res.Mask = res
	if err := r.runPgRestore(ctx, pgRestore, "post-data of the masked tables",
		"--section=data", "--section=post-data", "--use-list="+afterList); err != nil {
		return err
	}
	r.res.Restore = time.Since(start)
	s.log.Info("dbrestore: masked restore done", logKeyTarget, opts.Target, "masked_columns", len(res.Columns),
		"masking", res.Duration.Round(time.Millisecond), logKeyDuration, r.res.Restore.Round(time.Millisecond))
	return nil
}

// checkMask is step 2 of a masked restore: it reads the restored pre-data's columns and
// checks the rules against them. It returns the columns and, when the rules empty large
// objects, how many pre-data made (kept without their data).
func (r *restoreRun) checkMask(ctx context.Context) (cols []mask.Column, emptied int64, err error) {
	conn, err := r.s.connectRestore(ctx, r.opts.Target)
	if err != nil {
		return nil, 0, fmt.Errorf("dbrestore: %w", err)
	}
	cols, err = mask.CatalogColumns(ctx, conn)
	if err == nil && r.opts.Mask.EmptyLargeObjects() {
		err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&emptied)
	}
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, 0, fmt.Errorf("dbrestore: %w", err)
	}
	if err := r.opts.Mask.Check(cols); err != nil {
		return nil, 0, fmt.Errorf("dbrestore: backup %s: %w", r.b.Name(), err)
	}
	return cols, emptied, nil
}

// writeLists splits the backup's table of contents into the masked tables' data entries
// and two pg_restore lists written in dir: what loads beside them (first) and what
// waits for them (after). Large objects' data is left out when the rules empty them.
func (r *restoreRun) writeLists(ctx context.Context, pgRestore, dir string) (masked []maskedEntry, firstList, afterList string, err error) {
	list, err := tocList(ctx, pgRestore, r.b.Path)
	if err != nil {
		return nil, "", "", err
	}
	masked, first, after := splitMasked(list, r.opts.Mask.Tables())
	if r.opts.Mask.EmptyLargeObjects() {
		first = slices.DeleteFunc(first, func(line string) bool {
			e, ok := parseTOCLine(line)
			return ok && e.desc == "BLOBS" // their data; each one's metadata came with pre-data
		})
	}
	firstList, afterList = filepath.Join(dir, "first.list"), filepath.Join(dir, "after.list")
	for path, lines := range map[string][]string{firstList: first, afterList: after} {
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return nil, "", "", fmt.Errorf("dbrestore: %w", err)
		}
	}
	return masked, firstList, afterList, nil
}

// runPgRestore runs pg_restore into the target with extra arguments (a section, a list).
func (r *restoreRun) runPgRestore(ctx context.Context, pgRestore, what string, extra ...string) error {
	s, opts := r.s, r.opts
	args := append(r.baseArgs("--dbname", s.rcs.withDatabase(opts.Target).withoutPassword().String(),
		"--jobs", strconv.Itoa(opts.Jobs)), extra...)
	args = append(args, r.b.Path)
	p := &proc{path: pgRestore, args: args, env: r.pgEnv(), secrets: r.secrets(), started: r.reads.started,
		stderr: func(line string) bool {
			r.addOutput(line)
			return r.progressLine(line)
		}}
	if err := p.run(ctx); err != nil {
		return fmt.Errorf("dbrestore: pg_restore %s (%s) into %q: %w", r.b.Name(), what, opts.Target, err)
	}
	return nil
}

// baseArgs are pg_restore's arguments shared by a restore and every phase of a masked one.
func (r *restoreRun) baseArgs(more ...string) []string {
	// --no-subscriptions: a dump holds a subscription of production's with the name of
	// its slot on the publisher; restored (disabled), it would make every later DROP
	// DATABASE of the copy fail, and enabling or dropping it on staging would reach the
	// publisher and take or drop the slot production's subscription replicates through.
	args := append([]string{"--exit-on-error", "--verbose", "--no-subscriptions"}, more...)
	if !r.opts.KeepOwners {
		args = append(args, "--no-owner", "--no-acl")
	}
	if r.s.cfg.Role != "" {
		args = append(args, "--role="+r.s.cfg.Role)
	}
	return args
}

// pgEnv is pg_restore's environment: the password and the session settings.
func (r *restoreRun) pgEnv() []string {
	return append(passwordEnv(r.s.rcs), "PGOPTIONS="+pgOptions(os.Getenv("PGOPTIONS"), r.s.cfg.Settings))
}

// secrets are what no message of a masked restore may show.
func (r *restoreRun) secrets() []string {
	return append(r.s.secrets(), r.opts.Mask.Secret())
}

// progressLine passes a line of pg_restore to the progress parser, one phase at a time.
func (r *restoreRun) progressLine(line string) bool {
	r.progMu.Lock()
	defer r.progMu.Unlock()
	if r.prog == nil {
		r.prog = &progressParser{toc: r.toc, ids: r.opts.Jobs > 1, fn: r.opts.Progress, seen: map[int]bool{}}
	}
	return r.prog.line(line)
}

// listEntry is one entry of `pg_restore --list --verbose`: its line and what it depends on.
type listEntry struct {
	line string
	e    tocEntry
	deps []int
}

// tocList returns the entries of `pg_restore --list --verbose`, for -L lists.
func tocList(ctx context.Context, pgRestore, path string) ([]listEntry, error) {
	var list []listEntry
	p := &proc{path: pgRestore, args: []string{"--list", "--verbose", path}, stdout: func(l string) {
		if deps, ok := strings.CutPrefix(l, ";\tdepends on:"); ok && len(list) > 0 {
			for _, f := range strings.Fields(deps) {
				if id, err := strconv.Atoi(f); err == nil {
					list[len(list)-1].deps = append(list[len(list)-1].deps, id)
				}
			}
			return
		}
		if e, ok := parseTOCLine(l); ok {
			list = append(list, listEntry{line: l, e: e})
		}
	}}
	if err := p.run(ctx); err != nil {
		return nil, fmt.Errorf("dbrestore: pg_restore --list %s: %w", filepath.Base(path), err)
	}
	return list, nil
}

// maskedEntry is the TABLE DATA line of a table with rules.
type maskedEntry struct {
	table string // "schema.table"
	line  string
}

// splitMasked splits a backup's list for a masked restore: the TABLE DATA entries of
// tables (schema.table), streamed through the masker; first, every other entry that
// depends, directly or not, on none of those tables; after, the entries that do (the
// tables' indexes and constraints, foreign keys to them, ...), restored once their data
// is in.
func splitMasked(list []listEntry, tables []string) (masked []maskedEntry, first, after []string) {
	down := map[int]bool{}
	for _, le := range list {
		if le.e.desc == "TABLE" && tableOf(le.e, tables) != "" {
			down[le.e.id] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, le := range list {
			if down[le.e.id] {
				continue
			}
			for _, d := range le.deps {
				if down[d] {
					down[le.e.id], changed = true, true
					break
				}
			}
		}
	}
	for _, le := range list {
		switch {
		case le.e.desc == "TABLE DATA" && tableOf(le.e, tables) != "":
			masked = append(masked, maskedEntry{table: tableOf(le.e, tables), line: le.line})
		case down[le.e.id]:
			after = append(after, le.line)
		default:
			first = append(first, le.line)
		}
	}
	return masked, first, after
}

// tableOf returns the table of tables that the entry e (TABLE, TABLE DATA) is about ("" when none).
// The list does not quote names ("public person x postgres"), so the longest match wins:
// public."person x" rather than public.person. It shows a line break in a name as a
// space, and so does the match: the data of public."per<newline>son" is that table's (a
// table public."per son" beside it matches too, and its data, streamed with the other's
// rules, fails the restore, its COPY being into another table).
func tableOf(e tocEntry, tables []string) string {
	best := ""
	listed := strings.NewReplacer("\n", " ", "\r", " ")
	for _, t := range tables {
		schema, name, _ := strings.Cut(t, ".")
		if strings.HasPrefix(e.rest, listed.Replace(schema)+" "+listed.Replace(name)+" ") && len(t) > len(best) {
			best = t
		}
	}
	return best
}

// descends reports whether table is a partition or child of ancestor, directly or not,
// by the Parents of cols.
func descends(cols []mask.Column, table, ancestor string) bool {
	for _, c := range cols {
		if c.TableKey() != table {
			continue
		}
		for _, p := range c.Parents {
			if p == ancestor || (p != table && descends(cols, p, ancestor)) {
				return true
			}
		}
		return false
	}
	return false
}

// loadMasked streams the masked tables' data, up to opts.Jobs at once.
func (r *restoreRun) loadMasked(ctx context.Context, pgRestore, dir string, entries []maskedEntry, cols []mask.Column) (*mask.Result, error) {
	res := &mask.Result{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		work = make(chan int)
	)
	for range min(r.opts.Jobs, max(len(entries), 1)) {
		wg.Go(func() {
			for i := range work {
				if ctx.Err() != nil {
					continue
				}
				one, err := r.loadTable(ctx, pgRestore, dir, i, entries[i], cols)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					res.Columns = append(res.Columns, one.Columns...)
					res.Tables = append(res.Tables, one.Tables...)
				}
				mu.Unlock()
			}
		})
	}
	for i := range entries {
		work <- i
	}
	close(work)
	wg.Wait()
	return res, errors.Join(errs...)
}

// loadTable streams one table's data through the masker into the target.
func (r *restoreRun) loadTable(ctx context.Context, pgRestore, dir string, i int, e maskedEntry, cols []mask.Column) (*mask.Result, error) {
	s, rules := r.s, r.opts.Mask
	res := &mask.Result{}
	if _, tr, _ := rules.Table(e.table); tr.Kind == mask.Truncate {
		res.Tables = append(res.Tables, mask.TableResult{Table: e.table, Rule: tr.String()})
		r.addOutput("masking: " + e.table + " truncated")
		return res, nil
	}
	list := filepath.Join(dir, "table"+strconv.Itoa(i)+".list")
	if err := os.WriteFile(list, []byte(e.line+"\n"), 0o600); err != nil {
		return nil, err
	}
	var tableCols []mask.Column
	for _, c := range cols {
		if c.TableKey() == e.table {
			tableCols = append(tableCols, c)
		}
	}
	conn, err := s.connectRestore(ctx, r.opts.Target)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if s.cfg.Role != "" {
		if _, err := conn.Exec(ctx, "SET ROLE "+ident(s.cfg.Role)); err != nil {
			return nil, fmt.Errorf("dbrestore: masking %s: set role: %w", e.table, err)
		}
	}
	for k, v := range s.cfg.Settings {
		if _, err := conn.Exec(ctx, "SELECT set_config($1, $2, false)", k, v); err != nil {
			return nil, fmt.Errorf("dbrestore: masking %s: setting %s: %w", e.table, k, err)
		}
	}

	// An OS pipe: pg_restore writes into it directly, no copying goroutine between.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	defer pr.Close()
	p := &proc{path: pgRestore, args: r.baseArgs("--data-only", "--use-list="+list, "--file=-", r.b.Path),
		env: r.pgEnv(), secrets: r.secrets(), stdoutTo: pw, started: r.reads.started,
		stderr: func(line string) bool { r.addOutput(line); return strings.HasPrefix(line, "pg_restore: ") }}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		err := p.run(pctx)
		pw.Close() // the reader sees the end once pg_restore has exited
		done <- err
	}()
	st := rules.NewStream(pr, tableCols)
	st.Table = e.table // a partition's data may be a COPY into its root (--load-via-partition-root)
	copyErr := r.copyMasked(ctx, conn, st, e.table, cols, res)
	if copyErr != nil {
		stop() // pg_restore must not block on a pipe nobody reads
	}
	procErr := <-done
	_ = pr.Close()
	_ = st.Close()
	switch {
	case procErr != nil && (copyErr == nil || !errors.Is(procErr, context.Canceled)):
		// pg_restore failed on its own (not stopped for a failed COPY): the cause.
		return nil, fmt.Errorf("dbrestore: pg_restore %s (data of %s): %w", r.b.Name(), e.table, procErr)
	case copyErr != nil:
		return nil, fmt.Errorf("dbrestore: masking %s: %w", e.table, copyErr)
	}
	return res, nil
}

// copyMasked loads a stream's masked rows with COPY FROM STDIN.
func (r *restoreRun) copyMasked(ctx context.Context, conn *pgx.Conn, st *mask.Stream, table string, cols []mask.Column, res *mask.Result) error {
	h, tm, err := st.Header()
	if err != nil {
		return err
	}
	if h.Table != table && !descends(cols, table, h.Table) {
		// Masked with table's rules, the rows must be table's: its own COPY, or one into
		// a partitioned table it belongs to (--load-via-partition-root).
		return fmt.Errorf("%w: the data of %s is a COPY into %s", mask.ErrCopy, table, h.Table)
	}
	if st.Encoding != "" && st.Encoding != "UTF8" {
		if _, err := conn.Exec(ctx, "SELECT set_config('client_encoding', $1, false)", st.Encoding); err != nil {
			return err
		}
	}
	start := time.Now()
	if _, err := conn.PgConn().CopyFrom(ctx, st, h.Statement); err != nil {
		return err
	}
	if err := st.Drain(); err != nil {
		return err
	}
	res.Add(table, h.Columns, tm, r.opts.Mask)
	r.addOutput(fmt.Sprintf("masking: %s: %d rows in, %d out, in %s", table, tm.RowsIn, tm.RowsOut,
		time.Since(start).Round(time.Millisecond)))
	return nil
}

// expectedCounts are the row counts the restored tables must have: the manifest's, with
// the masked tables' table rules applied (a sample keeps the rows it kept, truncate none).
func (r *restoreRun) expectedCounts() map[string]int64 {
	want := r.b.Manifest.RowCounts
	if r.opts.Mask == nil || r.res.Mask == nil || len(want) == 0 {
		return want
	}
	out := make(map[string]int64, len(want))
	for k, v := range want {
		out[k] = v
	}
	for _, t := range r.res.Mask.Tables {
		if _, ok := out[t.Table]; ok {
			out[t.Table] = t.RowsOut
		}
	}
	return out
}
