package staging

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/progress"
	"github.com/restage/restage/schema"
	"github.com/restage/restage/svcctl"
)

// Log keys.
const (
	keyEnv      = "env"
	keyStep     = "step"
	keyDuration = "duration"
	keyDetail   = "detail"
	keyErr      = "err"
)

// run is the state of one Run, Deploy or Plan.
type run struct {
	r   *Rebuilder
	rep *Report
	log *slog.Logger
	cap *runLog // the run's captured log

	backup    *dbrestore.Backup
	release   *codesync.Release
	hadLive   bool // the live database existed before the run
	hadPrev   bool // <db>_prev existed at the cutover (renamed to <db>_old)
	tookOver  bool // the lock was a dead run's (killed, or its host rebooted)
	stopAt    time.Time
	downtimed bool
	dry       bool    // a dry run: no report delivered, no history written
	intent    *intent // the cutover under way, recorded in the state folder
	watch     watch   // the observer's view of the run
	// sideDSN, when set, gives the schema step its connection strings (strategy
	// physical: the restored cluster on its side port).
	sideDSN func(database string) string
}

// critical returns a context for a phase that must run to its end even when the
// caller's context is cancelled (a half-done cutover must be finished or undone), with
// its own budget: each critical phase gets a fresh one.
func (ru *run) critical(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), ru.r.cfg.Timeouts.Cutover)
}

// bounded runs fn with ctx bounded by d; an expiry reads "timed out after d (key)".
func bounded(ctx context.Context, d time.Duration, key string, fn func(ctx context.Context) (string, error)) (string, error) {
	bctx, cancel := context.WithTimeoutCause(ctx, d, fmt.Errorf("%w: timed out after %s (%s)", context.DeadlineExceeded, d, key))
	defer cancel()
	detail, err := fn(bctx)
	if err != nil && bctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w: %w", context.Cause(bctx), err)
	}
	return detail, err
}

func (r *Rebuilder) begin(kind string) *run {
	c := r.cap.start()
	now := r.cfg.Now()
	id := make([]byte, 6)
	_, _ = rand.Read(id)
	rep := &Report{
		ID:          now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id),
		Environment: r.cfg.Environment,
		Kind:        kind,
		Strategy:    r.cfg.Strategy,
		Started:     now,
	}
	return &run{r: r, rep: rep, cap: c, log: slog.New(r.cap).With(keyEnv, r.cfg.Environment)}
}

// step runs fn as the step called name, recording it in the report.
func (ru *run) step(ctx context.Context, name string, fn func(ctx context.Context) (string, error)) error {
	s := &Step{Name: name, Started: ru.r.cfg.Now()}
	ru.cap.startStep()
	ru.log.Info("step started", keyStep, name)
	ru.observeStarted(name)
	detail, err := fn(ru.progressContext(ctx))
	s.Duration = ru.r.cfg.Now().Sub(s.Started)
	s.Detail = redact.String(detail)
	if err != nil {
		s.Status = "failed"
		s.Error = redact.String(err.Error())
		ru.log.Error("step failed", keyStep, name, keyDuration, s.Duration, keyErr, s.Error)
		s.Output = redact.String(ru.cap.stepTail(20))
		if ru.rep.FailedStep == "" {
			ru.rep.FailedStep = name
			ru.rep.Error = s.Error
		}
	} else {
		s.Status = "ok"
		ru.log.Info("step done", keyStep, name, keyDuration, s.Duration, keyDetail, s.Detail)
		s.Output = redact.String(ru.cap.stepTail(5))
	}
	ru.rep.Steps = append(ru.rep.Steps, s)
	ru.observeDone(s)
	return err
}

func (ru *run) note(format string, args ...any) {
	n := redact.String(fmt.Sprintf(format, args...))
	ru.rep.Notes = append(ru.rep.Notes, n)
	ru.log.Warn(n)
}

// lock takes the environment's lock, waiting for running cron jobs up to CronWait.
func (ru *run) lock(ctx context.Context) (*Lock, error) {
	var l *Lock
	err := ru.step(ctx, "lock", func(ctx context.Context) (string, error) {
		var err error
		l, err = AcquireExclusive(ctx, ru.r.cfg.LockFile, LockOptions{WaitShared: ru.r.cfg.CronWait})
		if err != nil {
			return "", err
		}
		if l.TookOver != nil {
			ru.tookOver = true
			ru.note("took over the lock of a dead run (%s)", l.TookOver)
		}
		return l.Path(), nil
	})
	switch {
	case errors.Is(err, ErrLocked):
		ru.rep.Outcome = OutcomeLocked
		ru.rep.State = "untouched: another run is in progress"
	case err != nil: // e.g. cron jobs held it past cron_wait: nothing was done
		ru.rep.State = "untouched: the lock was not taken, so nothing was done"
	}
	return l, err
}

// finish completes the report, appends it to the history and delivers it.
func (ru *run) finish(ctx context.Context, runErr error) (*Report, error) {
	rep := ru.rep
	rep.Total = ru.r.cfg.Now().Sub(rep.Started)
	if !ru.stopAt.IsZero() && !ru.downtimed {
		rep.Downtime = ru.r.cfg.Now().Sub(ru.stopAt) // never came back up
	}
	if rep.Outcome == "" {
		rep.Outcome = OutcomeOK
		if runErr != nil {
			rep.Outcome = OutcomeFailed
		}
	}
	ru.log.Info("finished", "outcome", rep.Outcome, "total", rep.Total, "downtime", rep.Downtime)
	rep.Log = redact.String(ru.cap.all())
	ru.cap.stop()
	if ru.dry || rep.Outcome == OutcomeLocked {
		return rep, runErr // a dry run and a locked-out run leave no trace
	}
	histErr := appendHistory(ru.r.cfg.StateDir, rep, ru.r.cfg.HistoryKeep)
	if histErr != nil {
		ru.log.Error("history not written", keyErr, histErr)
		rep.Notes = append(rep.Notes, redact.String("this run is not in the history: "+histErr.Error()))
	}
	ru.writeMetrics()
	if n := ru.r.cfg.Notifier; n != nil {
		status := notify.StatusOK
		if rep.Outcome != OutcomeOK {
			status = notify.StatusFailed
		}
		msg := &notify.Message{
			ID: rep.ID, Environment: rep.Environment, Topic: ru.r.cfg.Topic, Status: status,
			Subject: rep.Subject(), Body: rep.Text(), Log: []byte(rep.Log),
			LogName: rep.Environment + "-" + rep.Kind + "-" + rep.ID + ".log", Time: rep.Started,
		}
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ru.r.cfg.Timeouts.Notify)
		defer cancel()
		if err := n.Notify(nctx, msg); err != nil {
			if errors.Is(err, notify.ErrSpooled) {
				ru.log.Warn("report not delivered; spooled for the next run", keyErr, redact.String(err.Error()))
			} else {
				ru.log.Error("report not delivered", keyErr, redact.String(err.Error()))
				if runErr == nil {
					// The run did what it should; only its report is lost: an outcome of its own.
					runErr = fmt.Errorf("%w: %w", ErrUndelivered, err)
				} else {
					runErr = errors.Join(runErr, fmt.Errorf("report not delivered: %w", err))
				}
			}
		}
	}
	if histErr != nil {
		if runErr == nil {
			// The run did what it should; only its record is lost: an outcome of its own.
			runErr = fmt.Errorf("%w: %w", ErrUnrecorded, histErr)
		} else {
			runErr = errors.Join(runErr, fmt.Errorf("history not written: %w", histErr))
		}
	}
	return rep, runErr
}

// locked runs flow under the environment's lock, once what an interrupted run left is
// repaired and the reports kept from earlier runs are delivered, and finishes the
// report with flow's error (or the lock's or the repair's).
func (ru *run) locked(ctx context.Context, flow func(context.Context) error) (*Report, error) {
	l, err := ru.lock(ctx)
	if err != nil {
		return ru.finish(ctx, err)
	}
	defer l.Release()
	if err := ru.repair(ctx); err != nil {
		return ru.finish(ctx, err)
	}
	ru.flushSpool(ctx)
	return ru.finish(ctx, flow(ctx))
}

// flushSpool delivers reports kept from earlier runs before this run's own, within the
// notify timeout.
func (ru *run) flushSpool(ctx context.Context) {
	if f, ok := ru.r.cfg.Notifier.(notify.Flusher); ok {
		ctx, cancel := context.WithTimeout(ctx, ru.r.cfg.Timeouts.Notify)
		defer cancel()
		if err := f.Flush(ctx); err != nil {
			ru.log.Warn("spooled reports still undelivered", keyErr, redact.String(err.Error()))
		}
	}
}

// Run rebuilds the environment from the newest production backup with the configured
// strategy. It returns the report (also appended to the history and delivered) and an
// error when the rebuild did not succeed: errors.Is(err, ErrLocked) when another run
// holds the lock, ErrRolledBack when it failed after the cutover and was put back,
// ErrUndelivered or ErrUnrecorded when it succeeded but its report could not be
// delivered nor spooled, or its history line not written.
func (r *Rebuilder) Run(ctx context.Context) (*Report, error) {
	if err := r.refuseProduction("rebuild"); err != nil {
		return nil, err
	}
	ru := r.begin(KindRebuild)
	// The backup is waited for before the lock is taken (wait ─► lock ─► verify): nothing
	// changes while a rebuild waits for the night's dump, so cron jobs go on meanwhile. A
	// failed wait still takes the lock, to repair what a killed run left.
	ps := &physicalState{}
	var waited error
	if r.cfg.Strategy == Physical {
		waited = ru.physicalBackup(ctx, ps)
	} else {
		waited = ru.awaitBackup(ctx, r.cfg.Backup)
	}
	return ru.locked(ctx, func(ctx context.Context) error {
		if waited != nil {
			ru.rep.State = ru.untouched()
			if r.cfg.Strategy == Physical {
				ru.rep.State = ru.untouchedCluster()
			}
			return waited
		}
		switch r.cfg.Strategy {
		case InPlace:
			return ru.inplace(ctx)
		case Physical:
			return ru.physicalRun(ctx, ps)
		}
		return ru.swap(ctx)
	})
}

// fetchBackup waits for and verifies the backup: nothing is destroyed before this passes.
func (ru *run) fetchBackup(ctx context.Context, wait dbrestore.WaitOptions) error {
	if err := ru.awaitBackup(ctx, wait); err != nil {
		return err
	}
	return ru.verifyBackup(ctx)
}

// awaitBackup is the backup step: the newest complete backup young enough, waited for.
func (ru *run) awaitBackup(ctx context.Context, wait dbrestore.WaitOptions) error {
	return ru.step(ctx, "backup", func(ctx context.Context) (string, error) {
		if ru.r.cfg.Backups == nil {
			return "", fmt.Errorf("%w: no backup catalog ([backup] dir and database)", ErrConfig)
		}
		if wait.Database == "" {
			return "", fmt.Errorf("%w: Backup.Database is required for a rebuild ([backup] database: which backups to take)", ErrConfig)
		}
		b, err := ru.r.cfg.Backups.Wait(ctx, wait)
		if err != nil {
			return "", err
		}
		ru.backup = b
		ru.rep.Backup = &BackupInfo{Name: b.Name(), Path: b.Path, Database: b.Manifest.Database,
			Created: b.Manifest.Created, Age: b.Age(ru.r.cfg.Now()), Size: b.Manifest.Size}
		return fmt.Sprintf("%s, %s old, %s", b.Name(), round(ru.rep.Backup.Age), humanBytes(b.Manifest.Size)), nil
	})
}

// verifyBackup is the verify step (checksum, table of contents, the staging server is
// neither the backup's source nor production) and the masking check: nothing is
// destroyed before it passes.
func (ru *run) verifyBackup(ctx context.Context) error {
	err := ru.step(ctx, "verify", func(ctx context.Context) (string, error) {
		if err := ru.r.cfg.Backups.Verify(ctx, ru.backup); err != nil {
			return "", err
		}
		// Rule 1, checked before anything is dropped: the staging server must be neither
		// the backup's source nor any production server known, whatever its name or address.
		if err := ru.r.cfg.Databases.GuardSource(ctx, ru.backup); err != nil {
			return "", err
		}
		ids, err := ru.productionIDs(ctx)
		if err != nil {
			return "", err
		}
		if err := ru.r.cfg.Databases.GuardProduction(ctx, ids...); err != nil {
			return "", err
		}
		// A restore login the restore would refuse fails here, before anything is
		// dropped or built, and in a dry run too.
		if c, ok := ru.r.cfg.Databases.(restoreLoginChecker); ok {
			if err := c.CheckRestoreLogin(ctx); err != nil {
				return "", err
			}
		}
		return "checksum and table of contents ok; the staging server is not the backup's source nor a production server", nil
	})
	if err != nil {
		return err
	}
	return ru.checkMask(ctx)
}

// restoreLoginChecker is a staging server that can tell before a restore whether its
// restore login would be refused (dbrestore.Server).
type restoreLoginChecker interface {
	CheckRestoreLogin(ctx context.Context) error
}

var _ restoreLoginChecker = (*dbrestore.Server)(nil)

// productionIDs returns what the run knows of production's identity: the configured
// system_identifiers and the sources the backup catalog's manifests name.
func (ru *run) productionIDs(ctx context.Context) ([]uint64, error) {
	ids := slices.Clone(ru.r.cfg.Production)
	if ru.r.cfg.Backups != nil {
		more, err := ru.r.cfg.Backups.SourceIDs(ctx)
		if err != nil {
			return nil, err
		}
		ids = append(ids, more...)
	}
	return ids, nil
}

// guard refuses to go on when the staging server is a production server, or when the
// run knows no production identity at all (rule 7: fail closed). A deploy runs it before
// anything else; a rebuild checks the same in its verify step, with the backup's source.
func (ru *run) guard(ctx context.Context) error {
	return ru.step(ctx, "guard", func(ctx context.Context) (string, error) {
		ids, err := ru.productionIDs(ctx)
		if err != nil {
			return "", err
		}
		if err := ru.r.cfg.Databases.GuardProduction(ctx, ids...); err != nil {
			if errors.Is(err, dbrestore.ErrNoProduction) {
				return "", fmt.Errorf("%w: %w: set database.production_ids to production's system_identifier (SELECT system_identifier FROM pg_control_system() there), or backup.dir to the folder of production's backups", ErrConfig, err)
			}
			return "", err
		}
		return fmt.Sprintf("the staging server is none of the %d production server(s) known", len(slices.Compact(slices.Sorted(slices.Values(ids))))), nil
	})
}

// clean removes leftovers of a crashed run and the database kept by the run before.
func (ru *run) clean(ctx context.Context) error {
	db := ru.r.cfg.Databases
	return ru.step(ctx, "clean", func(ctx context.Context) (string, error) {
		var done []string
		live, err := db.Exists(ctx, ru.r.cfg.Database)
		if err != nil {
			return "", err
		}
		ru.hadLive = live
		leftovers := []string{ru.r.old(), ru.r.failed(), ru.r.working()}
		if ru.rep.Kind == KindRebuild {
			leftovers = append(leftovers, ru.r.next()) // for a deploy, it is the waiting clone
		}
		for _, name := range leftovers {
			ok, err := db.Exists(ctx, name)
			if err != nil {
				return "", err
			}
			if ok {
				if err := db.Drop(ctx, name); err != nil {
					return "", err
				}
				ru.note("dropped %s, left over by a crashed or failed run", name)
			}
		}
		if !live {
			done = append(done, "no live database "+ru.r.cfg.Database+": first rebuild")
		}
		return strings.Join(done, "; "), nil
	})
}

func (ru *run) restore(ctx context.Context, target string) error {
	timeout := ru.r.cfg.Timeouts.Restore
	err := ru.step(ctx, "restore", func(ctx context.Context) (string, error) {
		return bounded(ctx, timeout, "database.restore_timeout", func(ctx context.Context) (string, error) {
			return ru.restoreInto(ctx, target)
		})
	})
	if err != nil || len(ru.r.cfg.Clones) == 0 {
		return err
	}
	return ru.step(ctx, "clones", func(ctx context.Context) (string, error) {
		return bounded(ctx, timeout, "database.restore_timeout", func(ctx context.Context) (string, error) {
			var made []string
			for i, c := range ru.r.cfg.Clones {
				name := c + "_next"
				if err := ru.r.cfg.Databases.Clone(nthOf(ctx, i, len(ru.r.cfg.Clones)), target, name); err != nil {
					return strings.Join(made, ", "), fmt.Errorf("clone %s: %w", name, err)
				}
				made = append(made, name)
			}
			return strings.Join(made, ", "), nil
		})
	})
}

// restoreInto restores the run's backup into target.
func (ru *run) restoreInto(ctx context.Context, target string) (string, error) {
	opts := ru.r.cfg.Restore
	opts.Target, opts.Replace = target, true
	opts.Progress = ru.restoreProgress(opts.Progress)
	res, err := ru.r.cfg.Databases.Restore(ctx, ru.backup, opts)
	if err != nil {
		return "", ru.maskErr(err)
	}
	ru.rep.Mask = maskInfo(res.Mask)
	d := fmt.Sprintf("%d objects into %s (pg_restore %s, post-restore %s, analyze %s)",
		res.Objects, target, round(res.Restore), round(res.PostRestore), round(res.Analyze))
	if len(res.RowCounts) > 0 {
		d += fmt.Sprintf("; row counts of %d tables match", len(res.RowCounts))
	}
	if len(res.Notices) > 0 {
		d += "; post-restore " + strings.Join(res.Notices, "; ")
	}
	return d, nil
}

func (ru *run) build(ctx context.Context) error {
	return ru.step(ctx, "release", func(ctx context.Context) (string, error) {
		rel, err := ru.r.cfg.Releases.Build(ctx, ru.r.cfg.Source)
		return ru.built(rel, err)
	})
}

// built records a release built for the run and describes it.
func (ru *run) built(rel *codesync.Release, err error) (string, error) {
	if err != nil {
		return "", err
	}
	ru.release = rel
	ru.rep.Release = &ReleaseInfo{ID: rel.ID, Revision: rel.Revision.String(), Commit: rel.Revision.Commit}
	return fmt.Sprintf("%s from %s (%d files, %d hard-linked)", rel.ID, rel.Revision, rel.Files, rel.Linked), nil
}

// buildBehind starts building the release while the database is restored (swap) or the
// cluster prepared (physical): nothing live is touched before the cutover, and the two
// use different resources. The function it
// returns is the "release" step: it waits for the build and records it (its duration is
// the wait; the detail says how long the build took, and the build's last progress is
// reported then); with abort it cancels the build instead, keeping a finished release
// for the caller's abandon to mark failed.
func (ru *run) buildBehind(ctx context.Context) func(ctx context.Context, abort bool) error {
	var last struct {
		sync.Mutex
		done, total int64
	}
	bctx, cancel := context.WithCancel(progress.With(ctx, func(done, total int64) {
		last.Lock()
		last.done, last.total = done, total
		last.Unlock()
	}))
	type result struct {
		rel  *codesync.Release
		err  error
		took time.Duration
	}
	results := make(chan result, 1)
	go func() {
		start := time.Now()
		rel, err := ru.r.cfg.Releases.Build(bctx, ru.r.cfg.Source)
		results <- result{rel, err, time.Since(start)}
	}()
	return func(ctx context.Context, abort bool) error {
		defer cancel()
		if abort {
			cancel()
			if res := <-results; res.err == nil {
				ru.release = res.rel
			}
			return nil
		}
		return ru.step(ctx, "release", func(ctx context.Context) (string, error) {
			var res result
			select {
			case res = <-results:
			case <-ctx.Done():
				cancel()
				res = <-results
			}
			last.Lock()
			if fn := progress.From(ctx); fn != nil && last.total > 0 {
				fn(last.done, last.total)
			}
			last.Unlock()
			d, err := ru.built(res.rel, res.err)
			if err == nil {
				d += fmt.Sprintf("; built in %s during the restore", round(res.took))
			}
			return d, err
		})
	}
}

func (ru *run) upgrade(ctx context.Context, database string) error {
	return ru.step(ctx, "schema", func(ctx context.Context) (string, error) {
		return bounded(ctx, ru.r.cfg.Timeouts.Schema, "schema.timeout", func(ctx context.Context) (string, error) {
			return ru.upgradeDB(ctx, database)
		})
	})
}

// upgradeDB runs the release's migrations on database.
func (ru *run) upgradeDB(ctx context.Context, database string) (string, error) {
	dsn, err := ru.migrationDSN(ctx, database)
	if err != nil {
		return "", err
	}
	t := schema.Target{
		DSN:  dsn,
		Dir:  filepath.Join(ru.release.Dir, ru.r.cfg.Migrations),
		Role: ru.r.cfg.SchemaRole,
	}
	if ru.r.cfg.Role == RoleProduction && ru.r.cfg.Preflight != nil {
		// In place on production's live database: a lock wait must not queue its traffic.
		t.LockWait = ru.r.cfg.Preflight.lockWait()
	}
	res, err := ru.r.cfg.Schema.Upgrade(ctx, t)
	if res != nil {
		info := &SchemaInfo{From: res.From, To: res.To}
		for _, a := range res.Applied {
			info.Migrations = append(info.Migrations, MigrationTime{Version: a.Version, Name: a.Name, Duration: a.Duration,
				SHA256: ru.migrationSum(a.Path)})
		}
		ru.rep.Schema = info
	}
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s at %d (from %d, %s)", database, res.To, res.From, plural(len(res.Applied), "migration")), nil
}

// unreadableFile is MigrationTime.SHA256 of a migration whose file could not be read
// once it ran: it matches no file, so a promote refuses to run it.
const unreadableFile = "unreadable"

// migrationSum is MigrationTime.SHA256 of the migration file at path ("" for a
// migration of no file: a fake's).
func (ru *run) migrationSum(path string) string {
	if path == "" {
		return ""
	}
	sum, err := fileSHA256(path)
	if err != nil {
		ru.log.Warn("could not checksum a migration that ran; a promote will refuse it", "path", path, keyErr, err)
		return unreadableFile
	}
	return sum
}

// fileSHA256 returns the hex SHA-256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// migrationDSN is the connection string the migrations run on database with: the side
// cluster's in a physical rebuild, else Config.MigrationDSN's (checked), else Config.DSN's.
func (ru *run) migrationDSN(ctx context.Context, database string) (string, error) {
	switch {
	case ru.sideDSN != nil:
		return ru.sideDSN(database), nil
	case ru.r.cfg.MigrationDSN != nil:
		return ru.r.cfg.MigrationDSN(ctx, database)
	}
	return ru.r.cfg.DSN(database), nil
}

// startHealthy starts the service and waits for the health gate, as the step name.
func (ru *run) startHealthy(ctx context.Context, name string) error {
	return ru.step(ctx, name, func(ctx context.Context) (string, error) {
		if err := ru.startService(ctx); err != nil {
			return "", err
		}
		if ru.r.cfg.Health == nil {
			return "started (no health check configured)", nil
		}
		return "started, healthy", nil
	})
}

// startService starts the service and waits for the health gate when there is one.
func (ru *run) startService(ctx context.Context) error {
	if ru.r.cfg.Health == nil {
		return ru.r.cfg.Service.Start(ctx)
	}
	return svcctl.StartHealthy(ctx, ru.r.cfg.Service, ru.r.cfg.Health)
}

func (ru *run) stop(ctx context.Context) error {
	ru.stopAt = ru.r.cfg.Now()
	return ru.step(ctx, "stop", func(ctx context.Context) (string, error) {
		return "", ru.r.cfg.Service.Stop(ctx)
	})
}

func (ru *run) up() {
	ru.rep.Downtime = ru.r.cfg.Now().Sub(ru.stopAt)
	ru.downtimed = true
}

// abandon tidies what a run prepared before it failed ahead of the cutover.
func (ru *run) abandon(ctx context.Context, next string) {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	if ru.release != nil {
		if err := ru.r.cfg.Releases.Discard(ctx, ru.release); err != nil {
			ru.log.Warn("could not mark the unused release failed", keyErr, err)
		}
	}
	if next != "" {
		if err := ru.r.cfg.Databases.Drop(ctx, next); err != nil {
			ru.log.Warn("could not drop the unused database; the next run will", "database", next, keyErr, redact.String(err.Error()))
		}
	}
}

// unrecorded ends a run whose cutover record could not be written before the stop: a
// killed run could not be repaired without it, so nothing is stopped; the report names
// the cutover as the step that failed, undo puts away what the run made.
func (ru *run) unrecorded(ctx context.Context, err error, undo func()) error {
	_ = ru.step(ctx, "cutover", func(context.Context) (string, error) { return "", err })
	undo()
	ru.dropUnstartedIntent()
	ru.rep.State = "untouched: the cutover record " + ru.r.intentPath() + " could not be written, so nothing was stopped; " +
		strings.TrimPrefix(ru.untouched(), "untouched: ")
	return err
}

func (ru *run) untouched() string {
	s := "untouched: the service, the live database " + ru.r.cfg.Database
	return s + " and the live release are as they were before the run"
}

// stopFailed ends a run whose service did not stop for the cutover (or whose work right
// after the stop failed): discard puts away what the run made and the service starts
// again on the previous release. Up again, the report's state is untouched(); what
// ("database", "cluster") names what stays as it was when the service does not come up.
func (ru *run) stopFailed(ctx context.Context, err error, discard func(context.Context), untouched func() string, what string) error {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	discard(ctx)
	if ru.startHealthy(ctx, "restart") == nil {
		ru.up()
		ru.clearIntent()
		ru.rep.State = untouched()
		return err
	}
	ru.rep.Outcome = OutcomeBroken
	ru.rep.State = "the service does not come up again on the previous release; " + what + " and release untouched"
	return err
}

// swap is the default flow: everything is prepared beside the live environment, which
// is touched only at the cutover.
func (ru *run) swap(ctx context.Context) error {
	if err := ru.verifyBackup(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.clean(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	next := ru.r.next()
	release := ru.buildBehind(ctx)
	if err := ru.restore(ctx, next); err != nil {
		_ = release(ctx, true)
		ru.abandon(ctx, next)
		ru.rep.State = ru.untouched()
		return err
	}
	if err := release(ctx, false); err != nil {
		ru.abandon(ctx, next)
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.upgrade(ctx, next); err != nil {
		ru.abandon(ctx, next)
		ru.rep.State = ru.untouched()
		return err
	}
	return ru.cutover(ctx, next, nil)
}

// cutover stops the service, runs afterStop (nil for a rebuild), swaps database names
// (when next is not "") and the release, starts the service and checks it, rolling back
// on failure. Its critical phases run to their end even if ctx is cancelled, each with
// its own budget, and an intent record follows them so that a killed run is repaired
// by the next one.
func (ru *run) cutover(ctx context.Context, next string, afterStop func(ctx context.Context) error) error {
	live, prev := ru.r.cfg.Database, ru.r.prev()
	db := ru.r.cfg.Databases
	in := &intent{Run: ru.rep.ID, Kind: ru.rep.Kind, PID: os.Getpid(), Started: ru.r.cfg.Now(), Live: live, Next: next,
		Prev: prev, Old: ru.r.old(), Failed: ru.r.failed(), HadLive: ru.hadLive, Release: ru.release.ID}
	if err := ru.record(in, phaseStopping); err != nil {
		return ru.unrecorded(ctx, err, func() { ru.abandon(ctx, next) })
	}
	cctx, cancel := ru.critical(ctx)
	err := ru.stop(cctx)
	cancel()
	if err == nil && afterStop != nil {
		err = afterStop(ctx)
	}
	if err != nil {
		return ru.stopFailed(ctx, err, func(ctx context.Context) { ru.abandon(ctx, next) }, ru.untouched, "database")
	}
	cctx, cancel = ru.critical(ctx)
	defer cancel()
	var swapped, activated bool
	err = ru.step(cctx, "cutover", func(ctx context.Context) (string, error) {
		var did []string
		if next != "" {
			// Yesterday's <db>_prev steps aside (dropped once the service is healthy) so
			// that a failure up to here leaves staging exactly as it was.
			var err error
			if ru.hadPrev, err = db.Exists(ctx, prev); err != nil {
				return "", err
			}
			in.HadPrev = ru.hadPrev
			if err := ru.record(in, phaseSwapping); err != nil {
				return "", err
			}
			if ru.hadPrev {
				if err := db.Rename(ctx, prev, ru.r.old()); err != nil {
					return "", err
				}
			}
			if err := db.Swap(ctx, live, next, prev); err != nil {
				if ru.hadPrev {
					if rerr := db.Rename(ctx, ru.r.old(), prev); rerr != nil {
						err = errors.Join(err, rerr)
					}
				}
				return "", err
			}
			swapped = true
			if err := ru.record(in, phaseSwapped); err != nil {
				return "", err
			}
			if ru.hadLive {
				did = append(did, fmt.Sprintf("%s is the new database (the old one kept as %s)", live, prev))
			} else {
				did = append(did, live+" is the new database")
			}
		}
		if err := ru.activate(ctx, in); err != nil {
			return "", err
		}
		activated = true
		return strings.Join(append(did, "current -> "+ru.release.ID), "; "), nil
	})
	if err == nil {
		state := fmt.Sprintf("%s serves release %s on %s, healthy", ru.r.cfg.Environment, ru.release.ID, live)
		if err = ru.goLive(cctx, state); err == nil {
			return nil
		}
	}
	return ru.rollback(ctx, err, swapped, activated, next)
}

// goLive starts the new release after the cutover and waits for its health gate; once
// it is healthy the run is done: state becomes the report's State and old releases are
// pruned. An error leaves the rollback to the caller.
func (ru *run) goLive(ctx context.Context, state string) error {
	settled, drop := ru.checkpointBehind(ctx)
	if err := ru.startHealthy(ctx, "start"); err != nil {
		drop() // the rollback must not wait for it
		return err
	}
	ru.up()
	ru.clearIntent()
	ru.rep.State = state
	settled() // after the downtime's end: the checkpoint is not the service's
	ru.prune(ctx)
	return nil
}

// checkpointer is a staging server that can be asked for a checkpoint
// (dbrestore.Server is one).
type checkpointer interface {
	Checkpoint(ctx context.Context) error
}

// checkpointBehind starts, when the prune will drop the database the run before kept, a
// checkpoint on the staging server while the service starts: the DROP DATABASE forces
// one, which would otherwise write the just-restored database out then. wait waits for
// it; cancel stops waiting for it (the server finishes it on its own) and returns once
// the call has. A failed checkpoint (e.g. a role without pg_checkpoint) costs nothing
// but the wait.
func (ru *run) checkpointBehind(ctx context.Context) (wait, cancel func()) {
	cp, ok := ru.r.cfg.Databases.(checkpointer)
	if !ok || !ru.hadPrev {
		return func() {}, func() {}
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		err := cp.Checkpoint(ctx)
		ru.log.Debug("checkpoint while the service starts", "duration", time.Since(start).Round(time.Millisecond), keyErr, err)
	}()
	return func() { <-done; stop() }, func() { stop(); <-done }
}

// activate points `current` at the new release and notes the one it replaced. When
// Activate fails, whatever it may have moved is put back: `current` must not point at
// the new release while the old database is live.
func (ru *run) activate(ctx context.Context, in *intent) error {
	if err := ru.record(in, phaseActivating); err != nil {
		return err
	}
	previous, err := ru.r.cfg.Releases.Activate(ctx, ru.release)
	if err != nil {
		if cur, cerr := ru.r.cfg.Releases.Current(ctx); cerr != nil && !errors.Is(cerr, codesync.ErrNoRelease) {
			err = errors.Join(err, fmt.Errorf("read current: %w", cerr))
		} else if cur != nil && cur.ID == ru.release.ID {
			if _, rerr := ru.r.cfg.Releases.Rollback(ctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("put current back: %w", rerr))
			} else {
				ru.note("activation failed after current moved; current put back")
			}
		}
		return err
	}
	if previous != nil {
		ru.rep.Release.Previous = previous.ID
	}
	return ru.record(in, phaseActivated)
}

// activateStep is a cutover step that only points `current` at the new release; it
// says whether the activation went through.
func (ru *run) activateStep(ctx context.Context, in *intent) (activated bool, err error) {
	err = ru.step(ctx, "cutover", func(ctx context.Context) (string, error) {
		if err := ru.activate(ctx, in); err != nil {
			return "", err
		}
		activated = true
		return "current -> " + ru.release.ID, nil
	})
	return activated, err
}

// rollback puts the previous database and release back and starts the service again,
// with a budget of its own.
func (ru *run) rollback(ctx context.Context, cause error, swapped, activated bool, next string) error {
	live, prev := ru.r.cfg.Database, ru.r.prev()
	db := ru.r.cfg.Databases
	return ru.rollbackWith(ctx, cause, activated, "database", func(ctx context.Context) ([]string, error) {
		if !swapped {
			ru.abandon(ctx, next)
			return nil, nil
		}
		var done []string
		if ru.hadLive {
			failed := ru.r.failed()
			if err := db.Swap(ctx, live, prev, failed); err != nil {
				return done, fmt.Errorf("database: %w", err)
			}
			done = append(done, live+" is the previous database again")
			if err := ru.recordRolledBack(); err != nil {
				return done, err
			}
			if err := db.Drop(ctx, failed); err != nil {
				ru.log.Warn("could not drop the rolled-back database; the next run will", "database", failed, keyErr, redact.String(err.Error()))
			}
		} else {
			if err := db.Drop(ctx, live); err != nil {
				return done, fmt.Errorf("database: %w", err)
			}
			done = append(done, "dropped "+live+" (there was none before)")
			if err := ru.recordRolledBack(); err != nil {
				return done, err
			}
		}
		if ru.hadPrev {
			if err := db.Rename(ctx, ru.r.old(), prev); err != nil {
				return done, fmt.Errorf("database: %w", err)
			}
		}
		return done, nil
	})
}

// recordRolledBack records, once a rollback has swapped the names back, that a repair
// must not swap them again.
func (ru *run) recordRolledBack() error {
	if ru.intent == nil {
		return nil
	}
	if err := ru.record(ru.intent, phaseRolledBack); err != nil {
		return fmt.Errorf("the names are back, but %w: remove %s before the next run, whose repair would swap them again", err, ru.r.intentPath())
	}
	return nil
}

// rollbackWith is a rollback with a budget of its own: it stops the service, puts the
// previous release back (or discards the new one), runs undo to put the previous data
// back (what names it: "database", "cluster"), and starts the service again.
func (ru *run) rollbackWith(ctx context.Context, cause error, activated bool, what string, undo func(ctx context.Context) ([]string, error)) error {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	err := ru.step(ctx, "rollback", func(ctx context.Context) (string, error) {
		var done []string
		if err := ru.r.cfg.Service.Stop(ctx); err != nil {
			return "", fmt.Errorf("stop the failed service: %w", err)
		}
		if activated {
			back, err := ru.r.cfg.Releases.Rollback(ctx)
			if err != nil {
				return "", fmt.Errorf("release: %w", err)
			}
			if back != nil {
				done = append(done, "current -> "+back.ID)
			} else {
				done = append(done, "current removed (there was no release before)")
			}
		} else if ru.release != nil {
			_ = ru.r.cfg.Releases.Discard(ctx, ru.release)
		}
		more, err := undo(ctx)
		done = append(done, more...)
		if err != nil {
			return "", err
		}
		return strings.Join(done, "; "), nil
	})
	if err != nil {
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "ROLLBACK FAILED: " + redact.String(err.Error()) + "; staging needs an operator (the next run repairs what it can from " + ru.r.intentPath() + ")"
		return errors.Join(cause, fmt.Errorf("%w: %w", ErrRollback, err))
	}
	if err := ru.startHealthy(ctx, "restart"); err != nil {
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "rolled back, but the previous release does not come up healthy either"
		return errors.Join(cause, fmt.Errorf("%w: restart: %w", ErrRollback, err))
	}
	ru.up()
	ru.clearIntent()
	ru.rep.Outcome = OutcomeRolledBack
	ru.rep.State = "rolled back: the service runs the previous release on the previous " + what + ", healthy"
	return fmt.Errorf("%w: %w", ErrRolledBack, cause)
}

func (ru *run) prune(ctx context.Context) {
	_ = ru.step(ctx, "prune", func(ctx context.Context) (string, error) {
		var did string
		if ru.hadPrev {
			if err := ru.r.cfg.Databases.Drop(ctx, ru.r.old()); err != nil {
				return "", err
			}
			did = "dropped the database kept by the run before"
		}
		return did, ru.r.cfg.Releases.Prune(ctx)
	})
	if s := ru.rep.Steps[len(ru.rep.Steps)-1]; s.Status == "failed" {
		// Pruning is housekeeping: it does not fail the rebuild.
		ru.rep.FailedStep, ru.rep.Error = "", ""
		ru.note("prune failed: %s", s.Error)
	}
}

// inplace follows the original procedure: stop, replace the database, code, schema,
// start. The downtime is the whole restore; a failure after the database was replaced
// cannot put yesterday's data back.
func (ru *run) inplace(ctx context.Context) error {
	if err := ru.verifyBackup(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	live := ru.r.cfg.Database
	if err := ru.clean(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	// In place is for hosts without room for two copies: a <db>_prev kept by an earlier
	// swap rebuild goes first.
	if ok, err := ru.r.cfg.Databases.Exists(ctx, ru.r.prev()); err == nil && ok {
		if err := ru.r.cfg.Databases.Drop(ctx, ru.r.prev()); err != nil {
			ru.rep.State = ru.untouched()
			return err
		}
		ru.note("dropped %s, kept by an earlier swap rebuild, to make room", ru.r.prev())
	}
	in := &intent{Run: ru.rep.ID, Kind: ru.rep.Kind, PID: os.Getpid(), Started: ru.r.cfg.Now(), Live: live,
		Prev: ru.r.prev(), Old: ru.r.old(), Failed: ru.r.failed(), HadLive: ru.hadLive}
	if err := ru.record(in, phaseStopping); err != nil {
		return ru.unrecorded(ctx, err, func() {})
	}
	cctx, cancel := ru.critical(ctx)
	err := ru.stop(cctx)
	cancel()
	if err != nil {
		return ru.inplaceFailed(ctx, err, false)
	}
	if err := ru.restore(ctx, live); err != nil {
		return ru.inplaceFailed(ctx, err, true)
	}
	if err := ru.build(ctx); err != nil {
		return ru.inplaceFailed(ctx, err, true)
	}
	if err := ru.upgrade(ctx, live); err != nil {
		return ru.inplaceFailed(ctx, err, true)
	}
	cctx, cancel = ru.critical(ctx)
	defer cancel()
	in.Release = ru.release.ID
	activated, err := ru.activateStep(cctx, in)
	if err == nil {
		state := fmt.Sprintf("rebuilt in place: %s serves release %s on the fresh %s (the downtime spans the whole restore: strategy inplace)", ru.r.cfg.Environment, ru.release.ID, live)
		if err = ru.goLive(cctx, state); err == nil {
			return nil
		}
	}
	if activated {
		ctx, cancel := ru.critical(ctx)
		defer cancel()
		_ = ru.r.cfg.Service.Stop(ctx)
		if _, rerr := ru.r.cfg.Releases.Rollback(ctx); rerr != nil {
			ru.note("could not roll the release back: %v", rerr)
		}
	}
	return ru.inplaceFailed(ctx, err, true)
}

// inplaceFailed starts the previous release again after an in-place failure and says
// what state the database is in.
func (ru *run) inplaceFailed(ctx context.Context, cause error, replaced bool) error {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	if ru.release != nil && ru.rep.FailedStep != "start" && ru.rep.FailedStep != "cutover" {
		_ = ru.r.cfg.Releases.Discard(ctx, ru.release)
	}
	dbState := "the database " + ru.r.cfg.Database + " is untouched"
	if replaced {
		dbState = "the database " + ru.r.cfg.Database + " was replaced (strategy inplace keeps no copy; run again to rebuild it)"
	}
	if ru.startHealthy(ctx, "restart") == nil {
		ru.up()
		ru.clearIntent()
		ru.rep.State = "the service runs the previous release again, healthy; " + dbState
		if replaced {
			ru.rep.Outcome = OutcomeBroken
		}
		return cause
	}
	ru.rep.Outcome = OutcomeBroken
	ru.rep.State = "the service is down; " + dbState
	return cause
}
