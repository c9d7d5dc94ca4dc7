package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/internal/redact"
)

const outputTailLines = 60

// Restore restores b into opts.Target on this server:
//
//  1. guard: refuse a backup whose manifest names no source (ErrCorrupt); note its source
//     as production, then refuse when this server is the backup's source (its
//     system_identifier) or otherwise known as production, and protected target names
//     (ErrProduction, ErrProtected);
//  2. verify b, unless a Verify of this *Backup passed already (nothing is destroyed before);
//  3. drop a leftover Target (opts.Replace; else ErrExists), create it from template0
//     (OWNER ServerConfig.Role, when set);
//  4. pg_restore -j N --exit-on-error (never "errors ignored on restore"), --no-owner
//     --no-acl unless opts.KeepOwners, --role=ServerConfig.Role when set, with
//     ServerConfig.Settings as session settings, reporting Progress;
//  5. compare the restored tables' row counts with the manifest's (ErrRowCountMismatch):
//     from the statistics (pg_stat_user_tables.n_tup_ins: every row of the fresh Target
//     was inserted by pg_restore) where they match, else by count(*);
//  6. run opts.PostRestore files, each in its own transaction (after SET ROLE
//     ServerConfig.Role, when set);
//  7. ANALYZE every table (in the same parallel pass as the counts of 5 when there are
//     no files).
//
// Row counts are compared before the post-restore files run, because they check that the
// restore is complete, and sanitising legitimately deletes rows. On any failure, and when
// ctx ends, the half-built Target is dropped.
func (s *Server) Restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error) {
	res, err := s.restore(ctx, b, opts)
	return res, redact.Error(err, s.secret)
}

type sqlFile struct {
	path, name, text string
}

func (s *Server) restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error) {
	// Options first.
	if b == nil {
		return nil, errors.New("dbrestore: Restore needs a backup")
	}
	if opts.Target == "" {
		return nil, errors.New("dbrestore: RestoreOptions.Target is required")
	}
	if opts.Jobs < 0 {
		return nil, errors.New("dbrestore: RestoreOptions.Jobs must not be negative")
	}
	if opts.Jobs == 0 {
		opts.Jobs = 2
	}
	if b.Manifest.SystemIdentifier == 0 {
		// Without its source the guard could not know production: a corrupt backup.
		return nil, fmt.Errorf("dbrestore: %w: manifest of %s has no system_identifier", ErrCorrupt, b.Name())
	}
	var files []sqlFile
	for _, p := range opts.PostRestore {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("dbrestore: post-restore file: %w", err)
		}
		files = append(files, sqlFile{path: p, name: filepath.Base(p), text: string(data)})
	}
	pgRestore, err := s.tools.tool("pg_restore")
	if err != nil {
		return nil, err
	}
	s.noteSource(b.Manifest.SystemIdentifier)
	t0 := time.Now()
	step := func(what string) {
		s.log.Debug("dbrestore: restore step", "step", what, "elapsed", time.Since(t0).Round(time.Millisecond))
	}

	admin, err := s.connect(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))

	// 1. Guard.
	id, err := systemIdentifier(ctx, admin)
	if err != nil {
		return nil, err
	}
	if id == b.Manifest.SystemIdentifier {
		return nil, fmt.Errorf("dbrestore: restore %s into %q: %w (this server's system_identifier %d is the backup's source)",
			b.Name(), opts.Target, ErrProduction, id)
	}
	if err := s.guard(ctx, admin, "restore into", opts.Target); err != nil {
		return nil, err
	}

	step("guarded")
	// 2. Verify.
	if !b.verified {
		if err := verifyBackup(ctx, s.tools, b); err != nil {
			return nil, err
		}
	}
	t := b.toc
	if t == nil {
		if t, err = listTOC(ctx, s.tools, b.Path); err != nil {
			return nil, err
		}
	}

	step("verified")
	// 3. Create the target.
	ok, err := exists(ctx, admin, opts.Target)
	if err != nil {
		return nil, err
	}
	if ok {
		if !opts.Replace {
			return nil, fmt.Errorf("dbrestore: restore into %q: %w", opts.Target, ErrExists)
		}
		s.log.Info("dbrestore: dropping leftover target", logKeyTarget, opts.Target)
		if err := s.drop(ctx, admin, opts.Target); err != nil {
			return nil, err
		}
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(opts.Target)+" TEMPLATE template0"+s.ownerClause()); err != nil {
		return nil, fmt.Errorf("dbrestore: create %q: %w", opts.Target, err)
	}
	step("created")
	res := &RestoreResult{Database: opts.Target, Objects: len(t.entries)}
	output := newLineTail(outputTailLines)
	var outMu sync.Mutex
	addOutput := func(line string) {
		outMu.Lock()
		output.add(line)
		outMu.Unlock()
	}
	err = s.fill(ctx, b, opts, t, files, pgRestore, res, addOutput)
	step("filled")
	outMu.Lock()
	res.Output = redact.String(output.String(), s.secret)
	outMu.Unlock()
	if err == nil {
		return res, nil
	}

	// Failed or cancelled: drop the half-built target.
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	s.log.Warn("dbrestore: restore failed; dropping the half-built target", logKeyTarget, opts.Target,
		logKeyError, redact.String(err.Error(), s.secret))
	derr := s.withConn(cctx, func(c *pgx.Conn) error { return s.drop(cctx, c, opts.Target) })
	if derr != nil {
		return res, fmt.Errorf("%w (dropping the half-built %q failed too: %v)", err, opts.Target, derr)
	}
	return res, err
}

// fill restores into the freshly created target and checks it.
func (s *Server) fill(ctx context.Context, b *Backup, opts RestoreOptions, t *toc, files []sqlFile,
	pgRestore string, res *RestoreResult, addOutput func(string)) error {
	target := s.cs.withDatabase(opts.Target)
	args := []string{"--dbname", target.withoutPassword().String(), "--jobs", strconv.Itoa(opts.Jobs),
		"--exit-on-error", "--verbose"}
	if !opts.KeepOwners {
		args = append(args, "--no-owner", "--no-acl")
	}
	if s.cfg.Role != "" {
		args = append(args, "--role="+s.cfg.Role)
	}
	args = append(args, b.Path)
	env := append(passwordEnv(s.cs), "PGOPTIONS="+pgOptions(os.Getenv("PGOPTIONS"), s.cfg.Settings))
	pp := &progressParser{toc: t, ids: opts.Jobs > 1, fn: opts.Progress, seen: map[int]bool{}}
	p := &proc{path: pgRestore, args: args, env: env, secrets: []string{s.secret},
		stderr: func(line string) bool {
			addOutput(line)
			return pp.line(line)
		}}
	s.log.Info("dbrestore: restore started", logBackup(b), logKeyTarget, opts.Target, "jobs", opts.Jobs,
		logKeyObjects, len(t.entries))
	start := time.Now()
	if err := p.run(ctx); err != nil {
		return fmt.Errorf("dbrestore: pg_restore %s into %q: %w", b.Name(), opts.Target, err)
	}
	res.Restore = time.Since(start)
	pp.finish()
	s.log.Info("dbrestore: pg_restore done", logKeyTarget, opts.Target, logKeyDuration, res.Restore.Round(time.Millisecond))

	conn, err := s.connectNotices(ctx, opts.Target, addOutput)
	if err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	// Row counts, and ANALYZE in the same pass when no post-restore file changes data.
	rels, err := listRelations(ctx, conn)
	if err != nil {
		return fmt.Errorf("dbrestore: list restored tables: %w", err)
	}
	var want map[string]int64
	if !opts.SkipRowCounts {
		want = b.Manifest.RowCounts
	}
	together := len(files) == 0
	start = time.Now()
	// Tables whose insert statistics match the manifest need no scan; count the rest.
	var fromStats map[string]int64
	toCount := want
	if len(want) > 0 {
		settings := pgOptions(os.Getenv("PGOPTIONS"), s.cfg.Settings)
		if fromStats, toCount, err = insertedFromStats(ctx, conn, rels, want, settings); err != nil {
			return fmt.Errorf("dbrestore: read statistics of %q: %w", opts.Target, err)
		}
		s.log.Debug("dbrestore: row counts from statistics", logKeyTarget, opts.Target, "verified", len(fromStats),
			"to_count", len(toCount), logKeyDuration, time.Since(start).Round(time.Millisecond))
	}
	counts, err := s.checkAndAnalyze(ctx, opts.Target, opts.Jobs, rels, toCount, together)
	if err != nil {
		return err
	}
	if len(want) > 0 {
		res.RowCounts = make(map[string]int64, len(want))
		for k, n := range fromStats {
			res.RowCounts[k] = n
		}
		for k, n := range counts {
			res.RowCounts[k] = n
		}
		s.log.Info("dbrestore: row counts match", logKeyTarget, opts.Target, "tables", len(res.RowCounts),
			"from_statistics", len(fromStats), "counted", len(counts), logKeyDuration, time.Since(start).Round(time.Millisecond))
	}
	if together {
		res.Analyze = time.Since(start)
	}

	start = time.Now()
	if role := s.cfg.Role; role != "" && len(files) > 0 {
		if _, err := conn.Exec(ctx, "SET ROLE "+ident(role)); err != nil {
			return fmt.Errorf("dbrestore: post-restore: set role %q: %w", role, err)
		}
	}
	for _, f := range files {
		fstart := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, f.text)
			return err
		})
		if err != nil {
			return fmt.Errorf("dbrestore: post-restore %s: %w", f.name, describeSQLError(err, f.text))
		}
		if role := s.cfg.Role; role != "" {
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
				return fmt.Errorf("dbrestore: post-restore %s: %w", f.name, err)
			}
			if user != role {
				return fmt.Errorf("dbrestore: post-restore %s: it left the session as %q, not the role %q (SET ROLE or RESET ROLE in the file?)",
					f.name, user, role)
			}
		}
		addOutput(fmt.Sprintf("post-restore %s: done in %s", f.name, time.Since(fstart).Round(time.Millisecond)))
		s.log.Info("dbrestore: post-restore file done", logKeyTarget, opts.Target, logKeyFile, f.name,
			logKeyDuration, time.Since(fstart).Round(time.Millisecond))
	}
	res.PostRestore = time.Since(start)

	if !together {
		start = time.Now()
		// The files may have created or dropped tables: list again.
		if rels, err = listRelations(ctx, conn); err != nil {
			return fmt.Errorf("dbrestore: list tables: %w", err)
		}
		if _, err := s.checkAndAnalyze(ctx, opts.Target, opts.Jobs, rels, nil, true); err != nil {
			return err
		}
		res.Analyze = time.Since(start)
	}
	s.log.Info("dbrestore: restore complete", logKeyTarget, opts.Target, "restore", res.Restore.Round(time.Millisecond),
		"post_restore", res.PostRestore.Round(time.Millisecond), "analyze", res.Analyze.Round(time.Millisecond),
		"tables_compared", len(res.RowCounts))
	return nil
}

// connectNotices connects to database, passing server notices to addOutput.
func (s *Server) connectNotices(ctx context.Context, database string, addOutput func(string)) (*pgx.Conn, error) {
	cs := s.cs.withDatabase(database)
	cfg, err := pgx.ParseConfig(cs.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cs.Redacted(), err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		addOutput(n.Severity + ": " + n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cs.Redacted(), err)
	}
	return conn, nil
}

// sqlError is a failed post-restore statement: PostgreSQL's message with the line of the
// file it points at, unwrapping to the driver's error (a *pgconn.PgError, or the
// context's error when ctx ended).
type sqlError struct {
	msg string
	err error
}

func (e *sqlError) Error() string { return e.msg }
func (e *sqlError) Unwrap() error { return e.err }

// describeSQLError renders PostgreSQL's message with the line of the file it points at.
func describeSQLError(err error, text string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Severity + ": " + pe.Message + " (SQLSTATE " + pe.Code + ")"
	if pe.Position > 0 {
		line := 1
		runes := 0
		for i := range text {
			if runes >= int(pe.Position)-1 {
				break
			}
			if text[i] == '\n' {
				line++
			}
			runes++
		}
		msg = fmt.Sprintf("line %d: %s", line, msg)
	}
	if pe.Detail != "" {
		msg += "; DETAIL: " + pe.Detail
	}
	if pe.Where != "" {
		msg += "; CONTEXT: " + pe.Where
	}
	return &sqlError{msg: msg, err: err}
}

// relation is a table or materialized view of the restored database.
type relation struct {
	schema, name string
	kind         string // pg_class.relkind
	partition    bool
	children     bool // pg_class.relhassubclass: count(*) includes inheritance children
	bytes        int64
}

func (r relation) key() string   { return r.schema + "." + r.name }
func (r relation) ident() string { return pgx.Identifier{r.schema, r.name}.Sanitize() }

// listRelations lists the tables (ordinary, partitioned, partitions) and materialized
// views outside the system schemas, the largest first.
func listRelations(ctx context.Context, conn *pgx.Conn) ([]relation, error) {
	rows, err := conn.Query(ctx, `
SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, c.relhassubclass, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 6 DESC, 1, 2`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (relation, error) {
		var rel relation
		err := r.Scan(&rel.schema, &rel.name, &rel.kind, &rel.partition, &rel.children, &rel.bytes)
		return rel, err
	})
}

// checkAndAnalyze counts the rows of want's tables and, when analyze is set, analyses
// every table and materialized view (partitioned tables through their root), on jobs
// connections to database, the largest tables first. A table whose count differs from
// want, or that is missing, fails with ErrRowCountMismatch naming them all.
func (s *Server) checkAndAnalyze(ctx context.Context, database string, jobs int, rels []relation,
	want map[string]int64, analyze bool) (map[string]int64, error) {
	start := time.Now()
	type task struct {
		rel            relation
		count, analyze bool
	}
	var tasks []task
	present := map[string]bool{}
	for _, r := range rels {
		t := task{rel: r}
		if _, ok := want[r.key()]; ok && r.kind == "r" {
			t.count = true
			present[r.key()] = true
		}
		t.analyze = analyze && !r.partition
		if t.count || t.analyze {
			tasks = append(tasks, t)
		}
	}
	got := make(map[string]int64, len(present))
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  []error
		queue = make(chan task)
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for range min(jobs, max(len(tasks), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.connect(cctx, database)
			if err != nil {
				fail(err)
				for range queue {
				}
				return
			}
			defer c.Close(context.WithoutCancel(cctx))
			for t := range queue {
				if cctx.Err() != nil {
					continue
				}
				if t.count {
					var n int64
					if err := c.QueryRow(cctx, "SELECT count(*) FROM "+t.rel.ident()).Scan(&n); err != nil {
						fail(fmt.Errorf("count %s: %w", t.rel.key(), err))
						continue
					}
					mu.Lock()
					got[t.rel.key()] = n
					mu.Unlock()
				}
				if t.analyze {
					if _, err := c.Exec(cctx, "ANALYZE "+t.rel.ident()); err != nil {
						fail(fmt.Errorf("analyze %s: %w", t.rel.key(), err))
					}
				}
			}
		}()
	}
	for _, t := range tasks {
		queue <- t
	}
	close(queue)
	wg.Wait()
	if len(errs) > 0 {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dbrestore: check %q: %w", database, context.Cause(ctx))
		}
		return nil, fmt.Errorf("dbrestore: check %q: %w", database, errors.Join(errs...))
	}
	if len(want) == 0 {
		return nil, nil
	}
	var diffs []string
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch n, ok := got[k]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s missing (backup has %d rows)", k, want[k]))
		case n != want[k]:
			diffs = append(diffs, fmt.Sprintf("%s has %d rows, backup %d", k, n, want[k]))
		}
	}
	if len(diffs) > 0 {
		shown := diffs
		if len(shown) > 20 {
			shown = append(shown[:20:20], fmt.Sprintf("and %d more", len(diffs)-20))
		}
		return got, fmt.Errorf("dbrestore: %w in %q: %s", ErrRowCountMismatch, database, strings.Join(shown, "; "))
	}
	s.log.Debug("dbrestore: counted rows", logKeyTarget, database, "tables", len(got),
		logKeyDuration, time.Since(start).Round(time.Millisecond))
	return got, nil
}

// statsWait bounds how long insertedFromStats waits for pg_restore's sessions to publish
// their statistics (PostgreSQL flushes a backend's counts when it exits, and at most once
// a second when it goes idle).
const statsWait = 2 * time.Second

// insertedFromStats takes the row counts of a freshly restored database from its
// statistics: every row of such a database was inserted by pg_restore, and
// pg_stat_user_tables.n_tup_ins counts the rows COPY inserted. It polls until every
// ordinary table of want without inheritance children has as many inserted rows as want
// says, or has more, or statsWait passed, and returns those that match (verified) and
// the part of want that must be counted (the rest). With track_counts off, or set for
// pg_restore's sessions, it verifies nothing.
func insertedFromStats(ctx context.Context, conn *pgx.Conn, rels []relation, want map[string]int64,
	sessionOptions string) (verified, rest map[string]int64, err error) {
	var on bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('track_counts')::boolean").Scan(&on); err != nil {
		return nil, nil, err
	}
	if !on || strings.Contains(sessionOptions, "track_counts") {
		return nil, want, nil
	}
	pending := map[string]bool{}
	for _, r := range rels {
		if _, ok := want[r.key()]; ok && r.kind == "r" && !r.children {
			pending[r.key()] = true
		}
	}
	verified = map[string]int64{}
	deadline := time.Now().Add(statsWait)
	for pause := 5 * time.Millisecond; len(pending) > 0; pause = min(2*pause, 100*time.Millisecond) {
		// Each query is its own transaction: a fresh statistics snapshot.
		rows, err := conn.Query(ctx, "SELECT schemaname, relname, n_tup_ins FROM pg_stat_user_tables")
		if err != nil {
			return nil, nil, err
		}
		var schema, name string
		var n int64
		_, err = pgx.ForEachRow(rows, []any{&schema, &name, &n}, func() error {
			k := schema + "." + name
			switch {
			case !pending[k]:
			case n == want[k]:
				verified[k] = n
				delete(pending, k)
			case n > want[k]: // counts never go down: count it
				delete(pending, k)
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		if len(pending) == 0 || time.Now().Add(pause).After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		case <-time.After(pause):
		}
	}
	rest = map[string]int64{}
	for k, n := range want {
		if _, ok := verified[k]; !ok {
			rest[k] = n
		}
	}
	return verified, rest, nil
}

// pgOptions returns PGOPTIONS: the inherited value plus "-c key=value" per setting.
func pgOptions(inherited string, settings map[string]string) string {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := []string{}
	if strings.TrimSpace(inherited) != "" {
		parts = append(parts, strings.TrimSpace(inherited))
	}
	for _, k := range keys {
		v := strings.ReplaceAll(settings[k], `\`, `\\`)
		v = strings.ReplaceAll(v, " ", `\ `)
		parts = append(parts, "-c "+k+"="+v)
	}
	return strings.Join(parts, " ")
}

// progressParser turns pg_restore --verbose lines into Progress events. With -j > 1
// pg_restore names item ids ("processing item 216 TABLE …", "finished item 3365 …"); with
// -j 1 it only says what it creates, one line per object.
type progressParser struct {
	toc  *toc
	ids  bool
	fn   func(Progress)
	seen map[int]bool
	done int
}

var (
	itemLineRE    = regexp.MustCompile(`^pg_restore: (processing|launching|finished|skipping) item (\d+) `)
	creatingRE    = regexp.MustCompile(`^pg_restore: creating (.+?) "(.*)"$`)
	processDataRE = regexp.MustCompile(`^pg_restore: processing data for table "(.*)"$`)
	executingRE   = regexp.MustCompile(`^pg_restore: executing (.+?) (.*)$`)
)

// line handles one line of standard error; it reports whether the line is routine
// (verbose progress rather than a warning or an error).
func (p *progressParser) line(l string) bool {
	if !strings.HasPrefix(l, "pg_restore: ") {
		return false
	}
	rest := l[len("pg_restore: "):]
	for _, pfx := range []string{"error:", "warning:", "detail:", "hint:", "WARNING:", "ERROR:"} {
		if strings.HasPrefix(rest, pfx) {
			return false
		}
	}
	if p.ids {
		m := itemLineRE.FindStringSubmatch(l)
		if m == nil {
			return true
		}
		id, _ := strconv.Atoi(m[2])
		idx, ok := p.toc.byID[id]
		if !ok {
			return true // ENCODING, SEARCHPATH, … are not listed
		}
		item := p.toc.entries[idx].label()
		if m[1] != "launching" && !p.seen[id] {
			p.seen[id] = true
			p.done++
		}
		p.emit(item)
		return true
	}
	var item string
	if m := creatingRE.FindStringSubmatch(l); m != nil {
		item = m[1] + " " + m[2]
	} else if m := processDataRE.FindStringSubmatch(l); m != nil {
		item = "TABLE DATA " + m[1]
	} else if m := executingRE.FindStringSubmatch(l); m != nil {
		item = m[1] + " " + m[2]
	} else {
		return true
	}
	p.done++
	p.emit(item)
	return true
}

func (p *progressParser) emit(item string) {
	if p.fn == nil {
		return
	}
	total := len(p.toc.entries)
	if !utf8.ValidString(item) {
		item = strings.ToValidUTF8(item, "?")
	}
	p.fn(Progress{Done: min(p.done, total), Total: total, Item: item})
}

// finish reports the end of a successful restore: every object done.
func (p *progressParser) finish() {
	total := len(p.toc.entries)
	if p.done < total {
		p.done = total
		if p.fn != nil {
			p.fn(Progress{Done: total, Total: total})
		}
	}
}
