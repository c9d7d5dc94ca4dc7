package dbrestore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/dbrestore/mask"
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
//     ServerConfig.Role, when set), then, unless opts.KeepOldRows, rewrite the tables
//     they updated or deleted rows of (mask.Rewrite);
//  7. ANALYZE every table (in the same parallel pass as the counts of 5 when there are
//     no files).
//
// Row counts are compared before the post-restore files run, because they check that the
// restore is complete, and sanitising legitimately deletes rows. On any failure, and when
// ctx ends, the half-built Target is dropped.
func (s *Server) Restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error) {
	res, err := s.restore(ctx, b, opts)
	return res, redact.Error(err, append(s.secrets(), opts.Mask.Secret())...)
}

// sqlFile is a post-restore file, read before anything is changed.
type sqlFile struct {
	path, name, text string
}

// validate checks opts and sets its defaults; b must name its source.
func (o *RestoreOptions) validate(b *Backup) error {
	if b == nil {
		return errors.New("dbrestore: Restore needs a backup")
	}
	if o.Target == "" {
		return errors.New("dbrestore: RestoreOptions.Target is required")
	}
	if o.Jobs < 0 {
		return errors.New("dbrestore: RestoreOptions.Jobs must not be negative")
	}
	if o.Jobs == 0 {
		o.Jobs = 2
	}
	if b.Manifest.SystemIdentifier == 0 {
		// Without its source the guard could not know production: a corrupt backup.
		return fmt.Errorf("dbrestore: %w: manifest of %s has no system_identifier", ErrCorrupt, b.Name())
	}
	return nil
}

// readSQLFiles reads the post-restore files.
func readSQLFiles(paths []string) ([]sqlFile, error) {
	var files []sqlFile
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("dbrestore: post-restore file: %w", err)
		}
		files = append(files, sqlFile{path: p, name: filepath.Base(p), text: string(data)})
	}
	return files, nil
}

// restoreRun is one Restore into a target the run created: what its steps share.
type restoreRun struct {
	s     *Server
	b     *Backup
	opts  RestoreOptions
	toc   *toc
	files []sqlFile
	res   *RestoreResult

	outMu  sync.Mutex
	output *lineTail // pg_restore's messages, what the files did (their notices counted)

	progMu sync.Mutex
	prog   *progressParser // a masked restore's, shared by its pg_restore runs

	reads *readWatch // the bytes of the dump pg_restore has read; nil: not followed

	// list is the pg_restore list (--use-list) of every entry but the dump's user
	// mappings (leftOut, as "user@server"), when it holds any; "": every entry.
	list    string
	leftOut []string

	// written are the tables the post-restore files updated or deleted rows of
	// ("schema.table", unquoted; repeats possible).
	written []string

	// notices counts the notices of the connection the post-restore files run on.
	notices Notices
}

// addOutput keeps line in the result's output tail; pg_restore's jobs call it at once.
func (r *restoreRun) addOutput(line string) {
	r.outMu.Lock()
	r.output.add(line)
	r.outMu.Unlock()
}

func (s *Server) restore(ctx context.Context, b *Backup, opts RestoreOptions) (*RestoreResult, error) {
	if err := opts.validate(b); err != nil {
		return nil, err
	}
	files, err := readSQLFiles(opts.PostRestore)
	if err != nil {
		return nil, err
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

	admin, err := s.admin(ctx)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	defer s.release(ctx, admin)
	if err := s.guardRestore(ctx, admin, b, opts.Target); err != nil {
		return nil, err
	}
	step("guarded")
	t, err := s.verifiedTOC(ctx, b)
	if err != nil {
		return nil, err
	}
	step("verified")
	if err := s.createTarget(ctx, admin, opts); err != nil {
		return nil, err
	}
	acl, err := s.fenceTarget(ctx, admin, opts.Target)
	if err != nil {
		return nil, s.dropHalfBuilt(ctx, opts.Target, err)
	}
	step("created")

	r := &restoreRun{s: s, b: b, opts: opts, toc: t, files: files, output: newLineTail(outputTailLines),
		res: &RestoreResult{Database: opts.Target, Objects: len(t.entries)}}
	err = r.fill(ctx, pgRestore)
	step("filled")
	if err == nil {
		err = s.openTarget(ctx, admin, opts.Target, acl, r.addOutput)
	}
	r.outMu.Lock()
	r.res.Output = redact.String(r.output.String(), append(s.secrets(), opts.Mask.Secret())...)
	r.outMu.Unlock()
	if err != nil {
		return r.res, s.dropHalfBuilt(ctx, opts.Target, err)
	}
	return r.res, nil
}

// fenceTarget revokes PUBLIC's CONNECT and TEMPORARY on target, freshly created, so
// that until the restore is complete (its data loaded and masked, the post-restore SQL
// run) only its owner (and the members of that role) and superusers can connect: a new
// database lets every login connect, and one that production's grants reach
// (KeepOwners: a table granted to PUBLIC, or to a role staging has too) could read
// production's values before the post-restore SQL replaces them. It returns the
// database's privileges as it left them, for openTarget.
func (s *Server) fenceTarget(ctx context.Context, admin *pgx.Conn, target string) (acl string, err error) {
	if _, err := admin.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+ident(target)+" FROM PUBLIC"); err != nil {
		return "", fmt.Errorf("dbrestore: close %q to other logins while it is restored: %w", target, err)
	}
	return databaseACL(ctx, admin, target)
}

// openTarget gives PUBLIC back what fenceTarget revoked, once the restore is complete;
// when the post-restore SQL changed the database's privileges itself (they are no
// longer acl), they are left as it made them.
func (s *Server) openTarget(ctx context.Context, admin *pgx.Conn, target, acl string, addOutput func(string)) error {
	now, err := databaseACL(ctx, admin, target)
	if err != nil {
		return err
	}
	if now != acl {
		addOutput(fmt.Sprintf("the post-restore SQL changed the privileges on database %s (%s): left as it made them", target, now))
		return nil
	}
	if _, err := admin.Exec(ctx, "GRANT CONNECT, TEMPORARY ON DATABASE "+ident(target)+" TO PUBLIC"); err != nil {
		return fmt.Errorf("dbrestore: open the restored %q to other logins: %w", target, err)
	}
	return nil
}

// databaseACL returns name's privileges (pg_database.datacl) as text.
func databaseACL(ctx context.Context, c *pgx.Conn, name string) (string, error) {
	var acl string
	if err := c.QueryRow(ctx, "SELECT coalesce(datacl::text, '') FROM pg_database WHERE datname = $1", name).Scan(&acl); err != nil {
		return "", fmt.Errorf("dbrestore: privileges on %q: %w", name, err)
	}
	return acl, nil
}

// guardRestore refuses to restore b into target when this server is b's source or
// otherwise production, or target may not be changed.
func (s *Server) guardRestore(ctx context.Context, admin *pgx.Conn, b *Backup, target string) error {
	id, err := systemIdentifier(ctx, admin)
	if err != nil {
		return err
	}
	if id == b.Manifest.SystemIdentifier {
		return fmt.Errorf("dbrestore: restore %s into %q: %w (this server's system_identifier %d is the backup's source)",
			b.Name(), target, ErrProduction, id)
	}
	return s.guard(ctx, admin, "restore into", target)
}

// verifiedTOC verifies b, unless a Verify of it passed already, and returns its table of
// contents.
func (s *Server) verifiedTOC(ctx context.Context, b *Backup) (*toc, error) {
	if !b.verified {
		if err := verifyBackup(ctx, s.tools, b); err != nil {
			return nil, err
		}
	}
	if b.toc != nil {
		return b.toc, nil
	}
	return listTOC(ctx, s.tools, b.Path)
}

// createTarget creates opts.Target, empty, dropping a leftover of that name first when
// opts.Replace says so.
func (s *Server) createTarget(ctx context.Context, admin *pgx.Conn, opts RestoreOptions) error {
	ok, err := exists(ctx, admin, opts.Target)
	if err != nil {
		return err
	}
	if ok {
		if !opts.Replace {
			return fmt.Errorf("dbrestore: restore into %q: %w", opts.Target, ErrExists)
		}
		s.log.Info("dbrestore: dropping leftover target", logKeyTarget, opts.Target)
		if err := s.drop(ctx, admin, opts.Target); err != nil {
			return err
		}
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident(opts.Target)+" TEMPLATE template0"+s.ownerClause()); err != nil {
		return fmt.Errorf("dbrestore: create %q: %w", opts.Target, err)
	}
	return nil
}

// dropHalfBuilt drops target after a restore into it failed with err, or was cancelled,
// and returns err (with the drop's failure, if any).
func (s *Server) dropHalfBuilt(ctx context.Context, target string, err error) error {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	s.log.Warn("dbrestore: restore failed; dropping the half-built target", logKeyTarget, target,
		logKeyError, redact.String(err.Error(), s.secrets()...))
	derr := s.withConn(cctx, func(c *pgx.Conn) error { return s.drop(cctx, c, target) })
	if derr != nil {
		return fmt.Errorf("%w (dropping the half-built %q failed too: %v)", err, target, derr)
	}
	return err
}

// fill restores into the freshly created target and checks it: pg_restore, the row
// counts, the post-restore files, ANALYZE (together with the counts when there are no
// files, which could change the tables).
func (r *restoreRun) fill(ctx context.Context, pgRestore string) error {
	load := r.pgRestore
	if r.opts.Mask != nil {
		load = r.maskedRestore
	}
	if err := r.s.checkRestoreLogin(ctx, r.opts.Target); err != nil {
		return err
	}
	cleanup, err := r.leaveOutUserMappings()
	if err != nil {
		return err
	}
	defer cleanup()
	r.reads = newReadWatch(ctx, r.b.Manifest.Size)
	err = load(ctx, pgRestore)
	r.reads.close(err == nil)
	if err != nil {
		return err
	}
	if len(r.leftOut) > 0 { // after pg_restore's lines, so that the output's tail keeps it
		r.addOutput("left out the dump's user mappings (they may reach production): " + strings.Join(r.leftOut, ", "))
	}
	conn, err := r.s.connectNotices(ctx, r.opts.Target, &r.notices)
	if err != nil {
		return fmt.Errorf("dbrestore: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if err := r.cutUserMappings(ctx, conn); err != nil {
		return err
	}
	rels, err := listRelations(ctx, conn)
	if err != nil {
		return fmt.Errorf("dbrestore: list restored tables: %w", err)
	}
	together := len(r.files) == 0
	if err := r.checkRowCounts(ctx, conn, rels, together); err != nil {
		return err
	}
	if err := r.postRestore(ctx, conn); err != nil {
		return err
	}
	if err := r.rewriteWritten(ctx, conn); err != nil {
		return err
	}
	if !together {
		start := time.Now()
		// The files may have created or dropped tables: list again.
		if rels, err = listRelations(ctx, conn); err != nil {
			return fmt.Errorf("dbrestore: list tables: %w", err)
		}
		if _, err := r.s.checkAndAnalyze(ctx, r.opts.Target, r.opts.Jobs, rels, nil, true); err != nil {
			return err
		}
		r.res.Analyze = time.Since(start)
	}
	r.s.log.Info("dbrestore: restore complete", logKeyTarget, r.opts.Target, "restore", r.res.Restore.Round(time.Millisecond),
		"post_restore", r.res.PostRestore.Round(time.Millisecond), "analyze", r.res.Analyze.Round(time.Millisecond),
		"tables_compared", len(r.res.RowCounts))
	return nil
}

// leaveOutUserMappings writes, when the dump holds user mappings, the list of every
// other entry for pg_restore (r.list) into a temporary folder that cleanup removes. A
// mapping holds the login, often with its password, that postgres_fdw or dblink use to
// reach another server, and a dump of production holds production's: restored, the
// dump's own code (a CHECK constraint or a default that writes to a foreign table)
// would reach production with it while the data loads, and its password would stand in
// staging's catalog and WAL.
func (r *restoreRun) leaveOutUserMappings() (cleanup func(), err error) {
	var ids, left []string
	for _, e := range r.toc.entries {
		if e.desc == "USER MAPPING" {
			left = append(left, e.mappingName())
			continue
		}
		ids = append(ids, strconv.Itoa(e.id))
	}
	if len(left) == 0 {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "restage-restore-")
	if err != nil {
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	r.list = filepath.Join(dir, "all.list")
	if err := os.WriteFile(r.list, []byte(strings.Join(ids, "\n")+"\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("dbrestore: %w", err)
	}
	r.leftOut = left
	r.s.log.Info("dbrestore: left out the dump's user mappings", logKeyTarget, r.opts.Target, "mappings", strings.Join(left, ", "))
	return func() { os.RemoveAll(dir) }, nil
}

// useList is the --use-list argument of a pg_restore that would restore the dump's
// user mappings; none when the dump holds none.
func (r *restoreRun) useList() []string {
	if r.list == "" {
		return nil
	}
	return []string{"--use-list=" + r.list}
}

// cutUserMappings drops every user mapping the dump restored into the target (as
// ServerConfig.Role when set: with --no-owner the foreign servers are its), before the
// post-restore SQL, the migrations and the service can use them: a mapping holds the
// login, often with its password, that postgres_fdw or dblink use to reach another
// server, and a dump of production holds production's, so an UPDATE of a foreign table
// on staging would change production. The foreign servers and tables stay; create in a
// post-restore file the mappings staging may use.
func (r *restoreRun) cutUserMappings(ctx context.Context, conn *pgx.Conn) error {
	dropped, err := DropUserMappings(ctx, conn, r.s.cfg.Role)
	if err != nil {
		return fmt.Errorf("dbrestore: drop the restored user mappings in %q: %w", r.opts.Target, err)
	}
	if len(dropped) > 0 {
		r.addOutput("dropped the restored user mappings (they may reach production): " + strings.Join(dropped, ", "))
		r.s.log.Info("dbrestore: dropped the restored user mappings", logKeyTarget, r.opts.Target, "mappings", strings.Join(dropped, ", "))
	}
	return nil
}

// DropUserMappings drops every user mapping of conn's database, in one transaction, as
// role when it is not "", and returns them as "user@server". A mapping holds the login
// (often with its password) that postgres_fdw or dblink use to reach another server;
// production's reach production, and an UPDATE of a foreign table on staging (by the
// post-restore SQL, a migration or the service) would change it. The foreign servers
// and tables stay. Restore calls it; the physical strategy calls it for every database
// of a restored cluster.
func DropUserMappings(ctx context.Context, conn *pgx.Conn, role string) ([]string, error) {
	var dropped []string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, "SELECT umuser = 0, usename, srvname FROM pg_user_mappings ORDER BY srvname, usename")
		type mapping struct {
			public        bool
			user, srvname string
		}
		ms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (mapping, error) {
			var m mapping
			return m, row.Scan(&m.public, &m.user, &m.srvname)
		})
		if err != nil || len(ms) == 0 {
			return err
		}
		if role != "" {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+ident(role)); err != nil {
				return err
			}
		}
		for _, m := range ms {
			user := "PUBLIC"
			if !m.public {
				user = ident(m.user)
			}
			if _, err := tx.Exec(ctx, "DROP USER MAPPING FOR "+user+" SERVER "+ident(m.srvname)); err != nil {
				return fmt.Errorf("user mapping for %s on server %s: %w", m.user, m.srvname, err)
			}
			dropped = append(dropped, m.user+"@"+m.srvname)
		}
		return nil
	})
	return dropped, err
}

// pgRestore runs pg_restore into the target, reporting progress.
func (r *restoreRun) pgRestore(ctx context.Context, pgRestore string) error {
	s, opts := r.s, r.opts
	target := s.rcs.withDatabase(opts.Target)
	args := append(r.baseArgs("--dbname", target.withoutPassword().String(), "--jobs", strconv.Itoa(opts.Jobs)), r.useList()...)
	args = append(args, r.b.Path)
	env := append(passwordEnv(s.rcs), "PGOPTIONS="+pgOptions(os.Getenv("PGOPTIONS"), s.cfg.Settings))
	pp := &progressParser{toc: r.toc, ids: opts.Jobs > 1, fn: opts.Progress, seen: map[int]bool{}}
	p := &proc{path: pgRestore, args: args, env: env, secrets: s.secrets(), started: r.reads.started,
		stderr: func(line string) bool {
			r.addOutput(line)
			return pp.line(line)
		}}
	s.log.Info("dbrestore: restore started", logBackup(r.b), logKeyTarget, opts.Target, "jobs", opts.Jobs,
		logKeyObjects, len(r.toc.entries))
	start := time.Now()
	if err := p.run(ctx); err != nil {
		return fmt.Errorf("dbrestore: pg_restore %s into %q: %w", r.b.Name(), opts.Target, err)
	}
	r.res.Restore = time.Since(start)
	pp.finish()
	s.log.Info("dbrestore: pg_restore done", logKeyTarget, opts.Target, logKeyDuration, r.res.Restore.Round(time.Millisecond))
	return nil
}

// checkRowCounts compares the restored tables' row counts with the manifest's (unless
// opts.SkipRowCounts), from the statistics where they match, else by count(*), and
// analyses every table in the same pass when analyze is set.
func (r *restoreRun) checkRowCounts(ctx context.Context, conn *pgx.Conn, rels []relation, analyze bool) error {
	s, target := r.s, r.opts.Target
	var want map[string]int64
	if !r.opts.SkipRowCounts {
		want = r.expectedCounts()
	}
	start := time.Now()
	// Tables whose insert statistics match the manifest need no scan; count the rest.
	var fromStats map[string]int64
	toCount := want
	if len(want) > 0 {
		settings := pgOptions(os.Getenv("PGOPTIONS"), s.cfg.Settings)
		var err error
		if fromStats, toCount, err = insertedFromStats(ctx, conn, rels, want, settings); err != nil {
			return fmt.Errorf("dbrestore: read statistics of %q: %w", target, err)
		}
		s.log.Debug("dbrestore: row counts from statistics", logKeyTarget, target, "verified", len(fromStats),
			"to_count", len(toCount), logKeyDuration, time.Since(start).Round(time.Millisecond))
	}
	counts, err := s.checkAndAnalyze(ctx, target, r.opts.Jobs, rels, toCount, analyze)
	if err != nil {
		return err
	}
	if len(want) > 0 {
		r.res.RowCounts = make(map[string]int64, len(want))
		maps.Copy(r.res.RowCounts, fromStats)
		maps.Copy(r.res.RowCounts, counts)
		s.log.Info("dbrestore: row counts match", logKeyTarget, target, "tables", len(r.res.RowCounts),
			"from_statistics", len(fromStats), "counted", len(counts), logKeyDuration, time.Since(start).Round(time.Millisecond))
	}
	if analyze {
		r.res.Analyze = time.Since(start)
	}
	return nil
}

// postRestore runs the post-restore files on conn, each in its own transaction, as
// ServerConfig.Role when set; a file that leaves the session as another role fails.
func (r *restoreRun) postRestore(ctx context.Context, conn *pgx.Conn) error {
	start := time.Now()
	role := r.s.cfg.Role
	if role != "" && len(r.files) > 0 {
		if _, err := conn.Exec(ctx, "SET ROLE "+ident(role)); err != nil {
			return fmt.Errorf("dbrestore: post-restore: set role %q: %w", role, err)
		}
	}
	for _, f := range r.files {
		fstart := time.Now()
		r.notices.Take() // counted before the file: not its own
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			writes, err := WatchWrites(ctx, tx)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, f.text); err != nil {
				return err
			}
			written, err := writes.Tables(ctx)
			r.written = append(r.written, written...)
			return err
		})
		if err != nil {
			if n := r.notices.Take(); n != "" {
				r.addOutput(fmt.Sprintf("post-restore %s: failed; %s", f.name, n))
			}
			return fmt.Errorf("dbrestore: post-restore %s: %w", f.name, describeSQLError(err, f.text))
		}
		if role != "" {
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
				return fmt.Errorf("dbrestore: post-restore %s: %w", f.name, err)
			}
			if user != role {
				return fmt.Errorf("dbrestore: post-restore %s: it left the session as %q, not the role %q (SET ROLE or RESET ROLE in the file?)",
					f.name, user, role)
			}
		}
		took := time.Since(fstart).Round(time.Millisecond)
		done := fmt.Sprintf("post-restore %s: done in %s", f.name, took)
		if n := r.notices.Take(); n != "" {
			done += "; " + n
			r.res.Notices = append(r.res.Notices, f.name+": "+n)
		}
		r.addOutput(done)
		r.s.log.Info("dbrestore: post-restore file done", logKeyTarget, r.opts.Target, logKeyFile, f.name, logKeyDuration, took)
	}
	r.res.PostRestore = time.Since(start)
	return nil
}

// rewriteWritten rewrites the tables the post-restore files updated or deleted rows of
// (mask.Rewrite), unless opts.KeepOldRows: their old row versions hold the values the
// files replaced.
func (r *restoreRun) rewriteWritten(ctx context.Context, conn *pgx.Conn) error {
	if r.opts.KeepOldRows || len(r.written) == 0 {
		return nil
	}
	start := time.Now()
	tables := slices.Compact(slices.Sorted(slices.Values(r.written)))
	if err := mask.Rewrite(ctx, conn, tables); err != nil {
		return fmt.Errorf("dbrestore: post-restore: rewrite the tables the files changed: %w", err)
	}
	took := time.Since(start).Round(time.Millisecond)
	r.addOutput(fmt.Sprintf("post-restore: rewrote the %d table(s) the files updated or deleted rows of, so that no old row version stays, in %s: %s",
		len(tables), took, strings.Join(tables, ", ")))
	r.s.log.Info("dbrestore: rewrote the tables the post-restore files changed", logKeyTarget, r.opts.Target, "tables", len(tables), logKeyDuration, took)
	return nil
}

// connectNotices connects to database (being restored) as the restore login, counting
// the server's notices in notices (their text is never kept: see Notices).
func (s *Server) connectNotices(ctx context.Context, database string, notices *Notices) (*pgx.Conn, error) {
	cs := s.rcs.withDatabase(database)
	cfg, err := pgx.ParseConfig(cs.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cs.Redacted(), err)
	}
	cfg.OnNotice = notices.OnNotice
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

// Error returns PostgreSQL's message with the file's line.
func (e *sqlError) Error() string { return e.msg }

// Unwrap returns the driver's error.
func (e *sqlError) Unwrap() error { return e.err }

// describeSQLError renders PostgreSQL's message with the line of the file it points at.
func describeSQLError(err error, text string) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	msg := pe.Severity + ": " + redact.Field(pe.Message) + " (SQLSTATE " + pe.Code + ")"
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
		msg += "; DETAIL: " + redact.Field(pe.Detail)
	}
	if pe.Where != "" {
		msg += "; CONTEXT: " + redact.Field(pe.Where)
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
	var tasks []relationTask
	for _, r := range rels {
		t := relationTask{rel: r, analyze: analyze && !r.partition}
		if _, ok := want[r.key()]; ok && r.kind == "r" {
			t.count = true
		}
		if t.count || t.analyze {
			tasks = append(tasks, t)
		}
	}
	got, err := s.runRelationTasks(ctx, database, jobs, tasks)
	if err != nil {
		return nil, fmt.Errorf("dbrestore: check %q: %w", database, err)
	}
	if len(want) == 0 {
		return nil, nil
	}
	if diffs := countDiffs(want, got); len(diffs) > 0 {
		if len(diffs) > 20 {
			diffs = append(diffs[:20:20], fmt.Sprintf("and %d more", len(diffs)-20))
		}
		return got, fmt.Errorf("dbrestore: %w in %q: %s", ErrRowCountMismatch, database, strings.Join(diffs, "; "))
	}
	s.log.Debug("dbrestore: counted rows", logKeyTarget, database, "tables", len(got),
		logKeyDuration, time.Since(start).Round(time.Millisecond))
	return got, nil
}

// relationTask is what checkAndAnalyze does to one relation.
type relationTask struct {
	rel            relation
	count, analyze bool
}

// runRelationTasks runs tasks, in order, on jobs connections to database, and returns
// the rows counted by table. The first failure cancels what is left; when ctx ends, its
// cause is the error.
func (s *Server) runRelationTasks(ctx context.Context, database string, jobs int, tasks []relationTask) (map[string]int64, error) {
	got := map[string]int64{}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		errs  []error
		queue = make(chan relationTask)
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
		wg.Go(func() {
			c, err := s.connectRestore(cctx, database)
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
		})
	}
	for _, t := range tasks {
		queue <- t
	}
	close(queue)
	wg.Wait()
	if len(errs) > 0 {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, errors.Join(errs...)
	}
	return got, nil
}

// countDiffs describes, in the order of the tables' names, every table whose count in
// got differs from want or is missing.
func countDiffs(want, got map[string]int64) []string {
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		switch n, ok := got[k]; {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s missing (backup has %d rows)", k, want[k]))
		case n != want[k]:
			diffs = append(diffs, fmt.Sprintf("%s has %d rows, backup %d", k, n, want[k]))
		}
	}
	return diffs
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
