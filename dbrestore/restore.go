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
)

const outputTailLines = 60

// Restore restores b into opts.Target on this server:
//
//  1. guard: refuse when this server is the backup's source (its system_identifier) or
//     listed as production, and protected target names (ErrProduction, ErrProtected);
//  2. verify b, unless a Verify of this *Backup passed already (nothing is destroyed before);
//  3. drop a leftover Target (opts.Replace; else ErrExists), create it from template0;
//  4. pg_restore -j N --exit-on-error (never "errors ignored on restore"), --no-owner
//     --no-acl unless opts.KeepOwners, with ServerConfig.Settings as session settings,
//     reporting Progress;
//  5. compare the restored tables' row counts with the manifest's (ErrRowCountMismatch);
//  6. run opts.PostRestore files, each in its own transaction;
//  7. ANALYZE.
//
// Row counts are compared before the post-restore files run, because they check that the
// restore is complete, and sanitising legitimately deletes rows. On any failure, and when
// ctx ends, the half-built Target is dropped.
func (s *Server) Restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error) {
	res, err := s.restore(ctx, b, opts)
	return res, redactErr(err, s.secret)
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

	// 2. Verify.
	if !b.verified {
		if err := verifyBackup(ctx, s.tools, b); err != nil {
			return nil, err
		}
	}
	t, err := listTOC(ctx, s.tools, b.Path)
	if err != nil {
		return nil, err
	}

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
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(opts.Target)+" TEMPLATE template0"); err != nil {
		return nil, fmt.Errorf("dbrestore: create %q: %w", opts.Target, err)
	}
	res := &RestoreResult{Database: opts.Target, Objects: len(t.entries)}
	output := newLineTail(outputTailLines)
	var outMu sync.Mutex
	addOutput := func(line string) {
		outMu.Lock()
		output.add(line)
		outMu.Unlock()
	}
	err = s.fill(ctx, b, opts, t, files, pgRestore, res, addOutput)
	outMu.Lock()
	res.Output = redact(output.String(), s.secret)
	outMu.Unlock()
	if err == nil {
		return res, nil
	}

	// Failed or cancelled: drop the half-built target.
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	s.log.Warn("dbrestore: restore failed; dropping the half-built target", logKeyTarget, opts.Target,
		logKeyError, redact(err.Error(), s.secret))
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
	args = append(args, b.Path)
	env := []string{"PGOPTIONS=" + pgOptions(os.Getenv("PGOPTIONS"), s.cfg.Settings)}
	if s.secret != "" {
		env = append(env, "PGPASSWORD="+s.secret)
	}
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

	if len(b.Manifest.RowCounts) > 0 && !opts.SkipRowCounts {
		counts, err := s.compareRowCounts(ctx, opts.Target, opts.Jobs, b.Manifest.RowCounts)
		if err != nil {
			return err
		}
		res.RowCounts = counts
	}

	start = time.Now()
	for _, f := range files {
		fstart := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, f.text)
			return err
		})
		if err != nil {
			return fmt.Errorf("dbrestore: post-restore %s: %s", f.name, describeSQLError(err, f.text))
		}
		addOutput(fmt.Sprintf("post-restore %s: done in %s", f.name, time.Since(fstart).Round(time.Millisecond)))
		s.log.Info("dbrestore: post-restore file done", logKeyTarget, opts.Target, logKeyFile, f.name,
			logKeyDuration, time.Since(fstart).Round(time.Millisecond))
	}
	res.PostRestore = time.Since(start)

	start = time.Now()
	if _, err := conn.Exec(ctx, "ANALYZE"); err != nil {
		return fmt.Errorf("dbrestore: analyze %q: %w", opts.Target, err)
	}
	res.Analyze = time.Since(start)
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

// describeSQLError renders PostgreSQL's message with the line of the file it points at.
func describeSQLError(err error, text string) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
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
	return msg
}

// compareRowCounts counts the rows of the manifest's tables in database with jobs
// connections and fails with ErrRowCountMismatch naming every table that differs.
func (s *Server) compareRowCounts(ctx context.Context, database string, jobs int, want map[string]int64) (map[string]int64, error) {
	start := time.Now()
	conn, err := s.connect(ctx, database)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	tables, err := listUserTables(ctx, conn)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, fmt.Errorf("dbrestore: list restored tables: %w", err)
	}
	byKey := map[string]userTable{}
	for _, t := range tables {
		byKey[t.key()] = t
	}
	var (
		missing []string
		todo    []userTable
	)
	for k := range want {
		if t, ok := byKey[k]; ok {
			todo = append(todo, t)
		} else {
			missing = append(missing, k)
		}
	}
	got := make(map[string]int64, len(todo))
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  []error
		queue = make(chan userTable)
	)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(jobs, max(len(todo), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.connect(cctx, database)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				cancel()
				for range queue {
				}
				return
			}
			defer c.Close(context.WithoutCancel(cctx))
			for t := range queue {
				var n int64
				err := c.QueryRow(cctx, "SELECT count(*) FROM "+pgx.Identifier{t.schema, t.name}.Sanitize()).Scan(&n)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("count %s: %w", t.key(), err))
					cancel()
				} else {
					got[t.key()] = n
				}
				mu.Unlock()
			}
		}()
	}
	for _, t := range todo {
		queue <- t
	}
	close(queue)
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("dbrestore: count restored rows: %w", errors.Join(errs...))
	}
	var diffs []string
	sort.Strings(missing)
	for _, k := range missing {
		diffs = append(diffs, fmt.Sprintf("%s missing (backup has %d rows)", k, want[k]))
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			diffs = append(diffs, fmt.Sprintf("%s has %d rows, backup %d", k, got[k], want[k]))
		}
	}
	if len(diffs) > 0 {
		shown := diffs
		if len(shown) > 20 {
			shown = append(shown[:20:20], fmt.Sprintf("and %d more", len(diffs)-20))
		}
		return got, fmt.Errorf("dbrestore: %w in %q: %s", ErrRowCountMismatch, database, strings.Join(shown, "; "))
	}
	s.log.Info("dbrestore: row counts match", logKeyTarget, database, "tables", len(got),
		logKeyDuration, time.Since(start).Round(time.Millisecond))
	return got, nil
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
