package staging

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/notify"
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

// criticalTimeout bounds the cutover and rollback steps, which run even when the
// caller's context is cancelled: a half-done cutover must always be finished or undone.
const criticalTimeout = 10 * time.Minute

// run is the state of one Run, Deploy or Plan.
type run struct {
	r   *Rebuilder
	rep *Report
	log *slog.Logger
	cap *capture

	backup    *dbrestore.Backup
	release   *codesync.Release
	hadLive   bool // the live database existed before the run
	hadPrev   bool // <db>_prev existed at the cutover (renamed to <db>_old)
	stopAt    time.Time
	downtimed bool
}

func (r *Rebuilder) begin(kind string) *run {
	c := r.cap
	c.reset()
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
	return &run{r: r, rep: rep, cap: c, log: slog.New(c).With(keyEnv, r.cfg.Environment)}
}

// step runs fn as the step called name, recording it in the report.
func (ru *run) step(ctx context.Context, name string, fn func(ctx context.Context) (string, error)) error {
	s := &Step{Name: name, Started: ru.r.cfg.Now()}
	ru.cap.startStep()
	ru.log.Info("step started", keyStep, name)
	detail, err := fn(ctx)
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
			ru.note("took over the lock of a dead run (%s)", l.TookOver)
		}
		return l.Path(), nil
	})
	if errors.Is(err, ErrLocked) {
		ru.rep.Outcome = OutcomeLocked
		ru.rep.State = "untouched: another run is in progress"
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
	if rep.Outcome == OutcomeLocked || rep.Outcome == OutcomePlanned {
		return rep, runErr
	}
	if err := appendHistory(ru.r.cfg.StateDir, rep); err != nil {
		ru.log.Error("history not written", keyErr, err)
	}
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
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := n.Notify(nctx, msg); err != nil {
			if errors.Is(err, notify.ErrSpooled) {
				ru.log.Warn("report not delivered; spooled for the next run", keyErr, redact.String(err.Error()))
			} else {
				ru.log.Error("report not delivered", keyErr, redact.String(err.Error()))
				runErr = errors.Join(runErr, fmt.Errorf("report not delivered: %w", err))
			}
		}
	}
	return rep, runErr
}

// flushSpool delivers reports kept from earlier runs before this run's own.
func (ru *run) flushSpool(ctx context.Context) {
	if f, ok := ru.r.cfg.Notifier.(Flusher); ok {
		if err := f.Flush(ctx); err != nil {
			ru.log.Warn("spooled reports still undelivered", keyErr, redact.String(err.Error()))
		}
	}
}

// Run rebuilds the environment from the newest production backup with the configured
// strategy. It returns the report (also appended to the history and delivered) and an
// error when the rebuild did not succeed: errors.Is(err, ErrLocked) when another run
// holds the lock, ErrRolledBack when it failed after the cutover and was put back.
func (r *Rebuilder) Run(ctx context.Context) (*Report, error) {
	ru := r.begin("rebuild")
	l, err := ru.lock(ctx)
	if err != nil {
		return ru.finish(ctx, err)
	}
	defer l.Release()
	ru.flushSpool(ctx)
	if r.cfg.Strategy == InPlace {
		err = ru.inplace(ctx)
	} else {
		err = ru.swap(ctx)
	}
	return ru.finish(ctx, err)
}

// fetchBackup waits for and verifies the backup: nothing is destroyed before this passes.
func (ru *run) fetchBackup(ctx context.Context, wait dbrestore.WaitOptions) error {
	if ru.r.cfg.Backups == nil {
		return fmt.Errorf("%w: no backup catalog", ErrConfig)
	}
	err := ru.step(ctx, "backup", func(ctx context.Context) (string, error) {
		b, err := ru.r.cfg.Backups.Wait(ctx, wait)
		if err != nil {
			return "", err
		}
		ru.backup = b
		ru.rep.Backup = &BackupInfo{Name: b.Name(), Path: b.Path, Database: b.Manifest.Database,
			Created: b.Manifest.Created, Age: b.Age(ru.r.cfg.Now()), Size: b.Manifest.Size}
		return fmt.Sprintf("%s, %s old, %s", b.Name(), round(ru.rep.Backup.Age), humanBytes(b.Manifest.Size)), nil
	})
	if err != nil {
		return err
	}
	return ru.step(ctx, "verify", func(ctx context.Context) (string, error) {
		if err := ru.r.cfg.Backups.Verify(ctx, ru.backup); err != nil {
			return "", err
		}
		// Rule 1, checked before anything is dropped: the staging server must not be the
		// backup's source, whatever its name or address.
		if g, ok := ru.r.cfg.Databases.(SourceGuard); ok {
			if err := g.GuardSource(ctx, ru.backup); err != nil {
				return "", err
			}
			return "checksum and table of contents ok; the staging server is not the backup's source", nil
		}
		return "checksum and table of contents ok", nil
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
		if ru.rep.Kind == "rebuild" {
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
	err := ru.step(ctx, "restore", func(ctx context.Context) (string, error) {
		opts := ru.r.cfg.Restore
		opts.Target, opts.Replace = target, true
		res, err := ru.r.cfg.Databases.Restore(ctx, ru.backup, opts)
		if err != nil {
			return "", err
		}
		d := fmt.Sprintf("%d objects into %s (pg_restore %s, post-restore %s, analyze %s)",
			res.Objects, target, round(res.Restore), round(res.PostRestore), round(res.Analyze))
		if len(res.RowCounts) > 0 {
			d += fmt.Sprintf("; row counts of %d tables match", len(res.RowCounts))
		}
		return d, nil
	})
	if err != nil || len(ru.r.cfg.Clones) == 0 {
		return err
	}
	return ru.step(ctx, "clones", func(ctx context.Context) (string, error) {
		var made []string
		for _, c := range ru.r.cfg.Clones {
			name := c + "_next"
			if err := ru.r.cfg.Databases.Clone(ctx, target, name); err != nil {
				return strings.Join(made, ", "), fmt.Errorf("clone %s: %w", name, err)
			}
			made = append(made, name)
		}
		return strings.Join(made, ", "), nil
	})
}

func (ru *run) build(ctx context.Context) error {
	return ru.step(ctx, "release", func(ctx context.Context) (string, error) {
		rel, err := ru.r.cfg.Releases.Build(ctx, ru.r.cfg.Source)
		if err != nil {
			return "", err
		}
		ru.release = rel
		ru.rep.Release = &ReleaseInfo{ID: rel.ID, Revision: rel.Revision.String()}
		return fmt.Sprintf("%s from %s (%d files, %d hard-linked)", rel.ID, rel.Revision, rel.Files, rel.Linked), nil
	})
}

func (ru *run) upgrade(ctx context.Context, database string) error {
	return ru.step(ctx, "schema", func(ctx context.Context) (string, error) {
		res, err := ru.r.cfg.Schema.Upgrade(ctx, schema.Target{
			DSN: ru.r.cfg.DSN(database),
			Dir: filepath.Join(ru.release.Dir, ru.r.cfg.Migrations),
		})
		if res != nil {
			info := &SchemaInfo{From: res.From, To: res.To}
			for _, a := range res.Applied {
				info.Migrations = append(info.Migrations, MigrationTime{Version: a.Version, Name: a.Name, Duration: a.Duration})
			}
			ru.rep.Schema = info
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s at %d (from %d, %d migrations)", database, res.To, res.From, len(res.Applied)), nil
	})
}

// startHealthy starts the service and waits for the health gate.
func (ru *run) startHealthy(ctx context.Context, name string) error {
	return ru.step(ctx, name, func(ctx context.Context) (string, error) {
		if ru.r.cfg.Health == nil {
			return "started (no health check configured)", ru.r.cfg.Service.Start(ctx)
		}
		return "started, healthy", svcctl.StartHealthy(ctx, ru.r.cfg.Service, ru.r.cfg.Health)
	})
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
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), criticalTimeout)
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

func (ru *run) untouched() string {
	s := "untouched: the service, the live database " + ru.r.cfg.Database
	return s + " and the live release are as they were before the run"
}

// swap is the default flow: everything is prepared beside the live environment, which
// is touched only at the cutover.
func (ru *run) swap(ctx context.Context) error {
	if err := ru.fetchBackup(ctx, ru.r.cfg.Backup); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.clean(ctx); err != nil {
		ru.rep.State = ru.untouched()
		return err
	}
	next := ru.r.next()
	if err := ru.restore(ctx, next); err != nil {
		ru.abandon(ctx, next)
		ru.rep.State = ru.untouched()
		return err
	}
	if err := ru.build(ctx); err != nil {
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
// on failure. It runs to its end even if ctx is cancelled.
func (ru *run) cutover(ctx context.Context, next string, afterStop func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), criticalTimeout)
	defer cancel()
	live, prev := ru.r.cfg.Database, ru.r.prev()
	db := ru.r.cfg.Databases

	err := ru.stop(ctx)
	if err == nil && afterStop != nil {
		err = afterStop(ctx)
	}
	if err != nil {
		ru.abandon(ctx, next)
		if ru.startHealthy(ctx, "restart") == nil {
			ru.up()
			ru.rep.State = ru.untouched()
			return err
		}
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "the service does not come up again on the previous release; database and release untouched"
		return err
	}
	var swapped, activated bool
	err = ru.step(ctx, "cutover", func(ctx context.Context) (string, error) {
		var did []string
		if next != "" {
			// Yesterday's <db>_prev steps aside (dropped once the service is healthy) so
			// that a failure up to here leaves staging exactly as it was.
			var err error
			if ru.hadPrev, err = db.Exists(ctx, prev); err != nil {
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
			if ru.hadLive {
				did = append(did, fmt.Sprintf("%s is the new database (the old one kept as %s)", live, prev))
			} else {
				did = append(did, live+" is the new database")
			}
		}
		if err := ru.activate(ctx); err != nil {
			return "", err
		}
		activated = true
		return strings.Join(append(did, "current -> "+ru.release.ID), "; "), nil
	})
	if err == nil {
		if err = ru.startHealthy(ctx, "start"); err == nil {
			ru.up()
			ru.rep.State = fmt.Sprintf("%s serves release %s on %s, healthy", ru.r.cfg.Environment, ru.release.ID, live)
			ru.prune(ctx)
			return nil
		}
	}
	return ru.rollback(ctx, err, swapped, activated, next)
}

// activate points `current` at the new release and notes the one it replaced.
func (ru *run) activate(ctx context.Context) error {
	previous, err := ru.r.cfg.Releases.Activate(ctx, ru.release)
	if err != nil {
		return err
	}
	if previous != nil {
		ru.rep.Release.Previous = previous.ID
	}
	return nil
}

// rollback puts the previous database and release back and starts the service again.
func (ru *run) rollback(ctx context.Context, cause error, swapped, activated bool, next string) error {
	live, prev := ru.r.cfg.Database, ru.r.prev()
	db := ru.r.cfg.Databases
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
		if swapped {
			if ru.hadLive {
				failed := ru.r.failed()
				if err := db.Swap(ctx, live, prev, failed); err != nil {
					return "", fmt.Errorf("database: %w", err)
				}
				done = append(done, live+" is the previous database again")
				if err := db.Drop(ctx, failed); err != nil {
					ru.log.Warn("could not drop the rolled-back database; the next run will", "database", failed, keyErr, redact.String(err.Error()))
				}
				if ru.hadPrev {
					if err := db.Rename(ctx, ru.r.old(), prev); err != nil {
						return "", fmt.Errorf("database: %w", err)
					}
				}
			} else {
				if err := db.Drop(ctx, live); err != nil {
					return "", fmt.Errorf("database: %w", err)
				}
				done = append(done, "dropped "+live+" (there was none before)")
				if ru.hadPrev {
					if err := db.Rename(ctx, ru.r.old(), prev); err != nil {
						return "", fmt.Errorf("database: %w", err)
					}
				}
			}
		} else {
			ru.abandon(ctx, next)
		}
		return strings.Join(done, "; "), nil
	})
	if err != nil {
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "ROLLBACK FAILED: " + redact.String(err.Error()) + "; staging needs an operator"
		return errors.Join(cause, fmt.Errorf("%w: %w", ErrRollback, err))
	}
	if err := ru.startHealthy(ctx, "restart"); err != nil {
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "rolled back, but the previous release does not come up healthy either"
		return errors.Join(cause, fmt.Errorf("%w: restart: %w", ErrRollback, err))
	}
	ru.up()
	ru.rep.Outcome = OutcomeRolledBack
	ru.rep.State = "rolled back: the service runs the previous release on the previous database, healthy"
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
	if err := ru.fetchBackup(ctx, ru.r.cfg.Backup); err != nil {
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
	if err := ru.stop(ctx); err != nil {
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
	var activated bool
	err := ru.step(ctx, "cutover", func(ctx context.Context) (string, error) {
		if err := ru.activate(ctx); err != nil {
			return "", err
		}
		activated = true
		return "current -> " + ru.release.ID, nil
	})
	if err == nil {
		if err = ru.startHealthy(ctx, "start"); err == nil {
			ru.up()
			ru.rep.State = fmt.Sprintf("rebuilt in place: %s serves release %s on the fresh %s", ru.r.cfg.Environment, ru.release.ID, live)
			ru.prune(ctx)
			return nil
		}
	}
	if activated {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), criticalTimeout)
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
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), criticalTimeout)
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
