package staging

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/internal/redact"
	"github.com/restage/restage/schema"
)

// Errors of the release train's promote, besides those of a run.
var (
	// ErrPreflight: production is not ready for the promote (an old transaction, a
	// lagging standby, other users' connections, a migration staging did not run or ran
	// too slowly), or the admin role cannot see other users' activity
	// (dbrestore.ErrStatsHidden); nothing was changed.
	ErrPreflight = errors.New("preflight refused the promote")
	// ErrRole: the flow asked for is not the environment's (a promote of a staging or
	// experimental environment, a rebuild, deploy or dry run of production). It wraps
	// ErrConfig (exit status 2).
	ErrRole = fmt.Errorf("%w: the role does not allow this flow", ErrConfig)
)

// Activity is what a promote's preflight reads of the production server
// (dbrestore.Server implements it); it changes nothing.
type Activity interface {
	// Sessions returns the client sessions other than the caller's, and the prepared
	// transactions (dbrestore.Session.GID): all of them, or dbrestore.ErrStatsHidden
	// when the caller cannot see other users'.
	Sessions(ctx context.Context) ([]dbrestore.Session, error)
	// Replicas returns the standbys streaming from the server, or
	// dbrestore.ErrStatsHidden when the caller cannot see their lag.
	Replicas(ctx context.Context) ([]dbrestore.Replica, error)
}

var _ Activity = (*dbrestore.Server)(nil)

// Preflight is what must hold on production before a promote stops its service
// ([preflight] of a production config). Zero values are the defaults given.
type Preflight struct {
	Activity Activity // required: the production server's sessions and standbys
	// MaxTransactionAge: a transaction open longer refuses the promote (it would hold
	// the migrations' locks); 0: 60s.
	MaxTransactionAge time.Duration
	// MaxReplicationLag: a standby replaying further behind refuses it; 0: 60s.
	MaxReplicationLag time.Duration
	// SystemUsers are the users whose connections are expected (the service's own,
	// monitoring, restage's); a session of any other user refuses the promote. nil:
	// ["postgres"].
	SystemUsers []string
	// MaxMigrationTime: a pending migration whose newest run on staging took longer, or
	// that staging never ran, refuses the promote; 0: 15s.
	MaxMigrationTime time.Duration
	// MaxLockWait bounds each wait of a migration for a lock on the live database
	// (schema.Target.LockWait): one that waits longer fails, and the promote rolls back,
	// rather than hold the queries on its table queued behind it (a preflight passed, a
	// session of a system user may still lock a table meanwhile); 0: 5s.
	MaxLockWait time.Duration
	// StagingStateDir is staging's state folder, whose history holds the timings of the
	// migrations staging ran (required).
	StagingStateDir string
}

// Default preflight limits.
const (
	DefaultMaxTransactionAge = 60 * time.Second
	DefaultMaxReplicationLag = 60 * time.Second
	DefaultMaxMigrationTime  = 15 * time.Second
	DefaultMaxLockWait       = 5 * time.Second
)

// preflightTimeout bounds the preflight's queries (rule 12): two catalog views and a
// file.
const preflightTimeout = 2 * time.Minute

// DefaultSystemUsers are the users whose connections a promote expects by default.
var DefaultSystemUsers = []string{"postgres"}

func (p *Preflight) limits() (txAge, lag, mig time.Duration, users []string) {
	txAge, lag, mig, users = p.MaxTransactionAge, p.MaxReplicationLag, p.MaxMigrationTime, p.SystemUsers
	if txAge <= 0 {
		txAge = DefaultMaxTransactionAge
	}
	if lag <= 0 {
		lag = DefaultMaxReplicationLag
	}
	if mig <= 0 {
		mig = DefaultMaxMigrationTime
	}
	if users == nil {
		users = DefaultSystemUsers
	}
	return
}

// lockWait is the bound of a migration's lock waits on production.
func (p *Preflight) lockWait() time.Duration {
	if p.MaxLockWait <= 0 {
		return DefaultMaxLockWait
	}
	return p.MaxLockWait
}

// checkRole returns the Config's problems with its role.
func (cfg *Config) checkRole() []string {
	switch cfg.Role {
	case "", RoleStaging, RoleExperimental:
		if cfg.Preflight != nil {
			return []string{"Preflight is only for a production Rebuilder (Role " + RoleProduction + ")"}
		}
	case RoleProduction:
		switch {
		case cfg.Preflight == nil:
			return []string{"Preflight is required with Role " + RoleProduction}
		case cfg.Preflight.Activity == nil:
			return []string{"Preflight.Activity is required"}
		case cfg.Preflight.StagingStateDir == "":
			return []string{"Preflight.StagingStateDir is required (staging's timings gate the migrations)"}
		}
	default:
		return []string{fmt.Sprintf("Role %q: want %q, %q or %q", cfg.Role, RoleStaging, RoleExperimental, RoleProduction)}
	}
	return nil
}

// refuseProduction is the error of a rebuild, deploy or dry run of a production
// Rebuilder: production is never rebuilt, restored into, cloned or renamed (rule 8).
func (r *Rebuilder) refuseProduction(flow string) error {
	if r.cfg.Role != RoleProduction {
		return nil
	}
	return fmt.Errorf("%w: %w: %s is a production environment (role = %q): it is never rebuilt, restored or cloned; only the release train's promote deploys to it, never a %s",
		ErrRole, dbrestore.ErrProduction, r.cfg.Environment, RoleProduction, flow)
}

// MigrateInPlace is the strategy a promote reports: the live database is kept and
// migrated in place, never restored or copied.
const MigrateInPlace Strategy = "migrate in place"

// PromoteOptions are the per-call options of Promote.
type PromoteOptions struct {
	// RequestedBy names who asked for the promote (e.g. $USER), for the report.
	RequestedBy string
}

// Promote deploys the configured source (production's [code]: the staging branch) to
// a production environment: it builds the release, reads the live database's patch
// level, runs the preflight (ErrPreflight: nothing changed), then stops the service,
// runs the pending migrations in place on the live database, points `current` at the
// new release, starts the service and waits for the health gate. The outage (stop to
// healthy) is the report's downtime. Nothing is ever restored, cloned, renamed or
// dropped on production: a production Rebuilder's databases refuse it (OpenProduction).
//
// When the start or the health gate fails, the previous release is started again; when
// migrations already ran, the report says the schema is ahead of the restored code and
// what the operator must decide. The report and history are as for a rebuild, under
// the kind "promote". A Rebuilder whose role is not production is refused (ErrRole).
func (r *Rebuilder) Promote(ctx context.Context, opts PromoteOptions) (*Report, error) {
	if r.cfg.Role != RoleProduction {
		role := r.cfg.Role
		if role == "" {
			role = RoleStaging
		}
		return nil, fmt.Errorf("%w: %s is a %s environment: only a config with role = %q can be promoted to", ErrRole, r.cfg.Environment, role, RoleProduction)
	}
	ru := r.begin(KindPromote)
	ru.rep.Strategy = MigrateInPlace
	ru.rep.RequestedBy = opts.RequestedBy
	return ru.locked(ctx, ru.promote)
}

// role is the environment's role ("" is staging), for what reports say.
func (r *Rebuilder) role() string {
	if r.cfg.Role == "" {
		return RoleStaging
	}
	return r.cfg.Role
}

func (ru *run) untouchedProduction() string {
	return "untouched: production's service, its live database " + ru.r.cfg.Database + " and its live release are as they were before the run"
}

// promote is Promote's run: the release built and checked against production's live
// database, the cutover recorded, the service stopped, the pending migrations run in
// place, the release activated and started behind the health gate.
func (ru *run) promote(ctx context.Context) error {
	live := ru.r.cfg.Database
	if err := ru.build(ctx); err != nil {
		ru.rep.State = ru.untouchedProduction()
		return err
	}
	st, err := ru.promoteCheck(ctx)
	if err != nil {
		ru.abandon(ctx, "")
		ru.rep.State = ru.untouchedProduction()
		return err
	}

	in := &intent{Run: ru.rep.ID, Kind: ru.rep.Kind, PID: os.Getpid(), Started: ru.r.cfg.Now(), Live: live,
		Prev: ru.r.prev(), Old: ru.r.old(), Failed: ru.r.failed(), HadLive: true, Release: ru.release.ID}
	// Without its record a killed promote could not be repaired: nothing is stopped, and
	// the report names the cutover as the step that failed.
	if err := ru.step(ctx, "cutover", func(context.Context) (string, error) {
		if err := ru.record(in, phaseStopping); err != nil {
			return "", err
		}
		return "recorded in " + ru.r.intentPath() + " before the stop", nil
	}); err != nil {
		ru.abandon(ctx, "")
		ru.dropUnstartedIntent()
		ru.rep.State = "untouched: the cutover record " + ru.r.intentPath() + " could not be written, so nothing was stopped; " +
			strings.TrimPrefix(ru.untouchedProduction(), "untouched: ") + " (release " + ru.release.ID + " was built and discarded)"
		return err
	}
	cctx, cancel := ru.critical(ctx)
	err = ru.stop(cctx)
	cancel()
	if err != nil {
		return ru.promoteFailed(ctx, err, false)
	}
	if len(st.Pending) > 0 {
		// Recorded first: a promote killed from here on leaves a schema possibly ahead of
		// the previous release, which the next run's repair reports.
		in.Migrated, in.SchemaFrom, in.SchemaTo = true, st.Version, st.Latest
		if err := ru.step(ctx, "cutover", func(context.Context) (string, error) {
			if err := ru.record(in, phaseMigrating); err != nil {
				return "", err
			}
			return "recorded: migrations begin on the live database", nil
		}); err != nil {
			// No migration ran: the rollback starts the previous release on the
			// database as it was.
			return ru.promoteFailed(ctx, err, false)
		}
		// The service is down: the migrations run to their end (bounded by schema.timeout)
		// even if the promote is interrupted, so that production's schema is not left
		// half-migrated by a cancelled statement.
		if err := ru.upgrade(context.WithoutCancel(ctx), live); err != nil {
			return ru.promoteFailed(ctx, err, false)
		}
		ru.rep.Schema.Pending = nil
	}
	cctx, cancel = ru.critical(ctx)
	defer cancel()
	activated, err := ru.activateStep(cctx, in)
	if err == nil {
		if err = ru.startHealthy(cctx, "start"); err == nil {
			ru.up()
			ru.clearIntent()
			ru.rep.State = fmt.Sprintf("%s serves release %s (%s) on %s at patch level %d, healthy; outage (stop to healthy) %s",
				ru.r.cfg.Environment, ru.release.ID, ru.release.Revision, live, ru.rep.Schema.To, round(ru.rep.Downtime))
			ru.prune(cctx)
			return nil
		}
	}
	return ru.promoteFailed(ctx, err, activated)
}

// promoteCheck is a promote's check and preflight steps: production's live database is
// neither dirty nor ahead of the release, and its pending migrations pass the preflight.
// It returns the database's schema status.
func (ru *run) promoteCheck(ctx context.Context) (*schema.Status, error) {
	live := ru.r.cfg.Database
	var st *schema.Status
	err := ru.step(ctx, "check", func(ctx context.Context) (string, error) {
		var err error
		st, err = ru.liveStatus(ctx, ru.r.cfg.SchemaRole, "")
		if err != nil {
			return "", err
		}
		ru.rep.Schema = &SchemaInfo{From: st.Version, To: st.Version}
		for _, m := range st.Pending {
			ru.rep.Schema.Pending = append(ru.rep.Schema.Pending, MigrationTime{Version: m.Version, Name: m.Name})
		}
		return fmt.Sprintf("%s at %d, release at %d: %s to run in place", live, st.Version, st.Latest, plural(len(st.Pending), "migration")), nil
	})
	if err == nil {
		err = ru.step(ctx, "preflight", func(ctx context.Context) (string, error) {
			return bounded(ctx, preflightTimeout, "preflight", func(ctx context.Context) (string, error) {
				return ru.preflight(ctx, st.Pending)
			})
		})
	}
	return st, err
}

// dropUnstartedIntent removes a cutover record whose write failed after its rename (the
// folder's fsync): nothing was stopped, and the next run must not repair from it.
func (ru *run) dropUnstartedIntent() {
	path := ru.r.intentPath()
	if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
		if err := os.Remove(path); err != nil {
			ru.note("the cutover record %s of a promote that stopped nothing could not be removed (%v): the next run restarts the service from it", path, err)
		}
	}
}

// migrated says whether the promote changed the live database's schema.
func (ru *run) migrated() bool {
	s := ru.rep.Schema
	return s != nil && (len(s.Migrations) > 0 || s.To != s.From)
}

// promoteFailed puts the previous release back after the service was stopped, starts
// it, and says what state production is in: with migrations run, the schema is ahead of
// the code that now runs, and an operator must decide.
func (ru *run) promoteFailed(ctx context.Context, cause error, activated bool) error {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	err := ru.step(ctx, "rollback", func(ctx context.Context) (string, error) {
		if err := ru.r.cfg.Service.Stop(ctx); err != nil {
			return "", fmt.Errorf("stop the failed service: %w", err)
		}
		if !activated {
			_ = ru.r.cfg.Releases.Discard(ctx, ru.release)
			return "current still -> the previous release", nil
		}
		back, err := ru.r.cfg.Releases.Rollback(ctx)
		if err != nil {
			return "", fmt.Errorf("release: %w", err)
		}
		if back == nil {
			return "current removed (there was no release before)", nil
		}
		return "current -> " + back.ID, nil
	})
	healthy := err == nil && ru.startHealthy(ctx, "restart") == nil
	if healthy {
		ru.up()
		ru.clearIntent()
	}
	schemaState := "the database " + ru.r.cfg.Database + " is as it was (no migration ran)"
	if ru.rep.FailedStep == "schema" {
		schemaState = "a migration failed on the live database " + ru.r.cfg.Database + ": check its version and dirty flag (schema_migrations) before anything else; the operator must decide whether to fix the migration forward or repair by hand"
	}
	if ru.migrated() {
		s := ru.rep.Schema
		var ran []string
		for _, m := range s.Migrations {
			ran = append(ran, fmt.Sprintf("%d_%s", m.Version, m.Name))
		}
		schemaState = fmt.Sprintf("THE SCHEMA IS AHEAD OF THE RESTORED CODE: %s went from patch level %d to %d in place (%s), and the previous release expects %d. restage never reverses migrations on production; the operator must decide: fix forward (merge the fix into the staging branch, let staging's nightly run it, promote again), or reverse the migrations by hand (their .down.sql files, newest first) to keep the previous release",
			ru.r.cfg.Database, s.From, s.To, strings.Join(ran, ", "), s.From)
	}
	switch {
	case healthy && !ru.migrated():
		ru.rep.Outcome = OutcomeRolledBack
		ru.rep.State = "rolled back: production runs the previous release again, healthy; " + schemaState
		return fmt.Errorf("%w: %w", ErrRolledBack, cause)
	case healthy:
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "production runs the previous release again and answers its health check; " + schemaState
	case err != nil:
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "ROLLBACK FAILED: " + redact.String(err.Error()) + "; production's service is stopped and needs an operator (the next run repairs what it can from " + ru.r.intentPath() + "); " + schemaState
	default:
		ru.rep.Outcome = OutcomeBroken
		ru.rep.State = "PRODUCTION IS DOWN: the previous release does not come up healthy; " + schemaState
	}
	if err != nil {
		return errors.Join(cause, fmt.Errorf("%w: %w", ErrRollback, err))
	}
	return cause
}

// preflight checks production before anything stops; its error wraps ErrPreflight and
// names every reason.
func (ru *run) preflight(ctx context.Context, pending []schema.Migration) (string, error) {
	p := ru.r.cfg.Preflight
	// A role that cannot see other users' activity would pass every check blind: that
	// refuses the promote too, and the other reasons are still named, so that the
	// operator who fixes this one is not refused again for one known now.
	var hidden error
	sessions, err := p.Activity.Sessions(ctx)
	if errors.Is(err, dbrestore.ErrStatsHidden) {
		hidden, sessions, err = err, nil, nil
	}
	if err != nil {
		return "", err
	}
	replicas, err := p.Activity.Replicas(ctx)
	if errors.Is(err, dbrestore.ErrStatsHidden) {
		if hidden == nil {
			hidden = err
		}
		replicas, err = nil, nil
	}
	if err != nil {
		return "", err
	}
	history, err := History(p.StagingStateDir)
	switch {
	case errors.Is(err, ErrHistoryCorrupt):
		ru.note("staging's history: %v", err) // the readable runs still count
	case errors.Is(err, fs.ErrNotExist):
		history = nil
	case err != nil:
		return "", fmt.Errorf("staging's history: %w", err)
	}
	reasons, ok := checkPreflight(p, sessions, replicas, pending, history)
	if ru.release != nil {
		reason, fine := checkCommit(history, ru.release.Revision.Commit, p.StagingStateDir)
		reasons, ok = appendNonEmpty(reasons, reason), appendNonEmpty(ok, fine)
	}
	if hidden != nil {
		if len(reasons) == 0 {
			return "", fmt.Errorf("%w: %w", ErrPreflight, hidden)
		}
		return "", fmt.Errorf("%w: %w; %s", ErrPreflight, hidden, strings.Join(reasons, "; "))
	}
	if len(reasons) > 0 {
		return "", fmt.Errorf("%w: %s", ErrPreflight, strings.Join(reasons, "; "))
	}
	return strings.Join(ok, "; "), nil
}

// checkPreflight returns the reasons a promote must not start (none: it may), and what
// was found fine.
func checkPreflight(p *Preflight, sessions []dbrestore.Session, replicas []dbrestore.Replica, pending []schema.Migration, history []*Report) (reasons, ok []string) {
	txAge, lag, mig, users := p.limits()
	others := map[string]int{}
	for _, s := range sessions {
		if s.GID != "" {
			// No session holds it; its locks stay until it is committed or rolled back.
			if s.XactAge > txAge {
				reasons = append(reasons, fmt.Sprintf("prepared transaction %q (user %s, database %s) has been open for %s, over max_transaction_age %s: it holds its locks until COMMIT PREPARED or ROLLBACK PREPARED",
					s.GID, s.User, s.Database, round(s.XactAge), txAge))
			}
			continue
		}
		if s.XactAge > txAge {
			reasons = append(reasons, fmt.Sprintf("a transaction has been open for %s (pid %d, user %s, database %s, %s), over max_transaction_age %s",
				round(s.XactAge), s.PID, s.User, s.Database, s.State, txAge))
		}
		if !slices.Contains(users, s.User) {
			others[s.User]++
		}
	}
	for _, u := range sortedKeys(others) {
		reasons = append(reasons, fmt.Sprintf("%d connection(s) of user %q, not one of system_users %v: they would block the migrations", others[u], u, users))
	}
	for _, r := range replicas {
		if r.ReplayLag > lag {
			reasons = append(reasons, fmt.Sprintf("standby %q (%s) replays %s behind, over max_replication_lag %s", r.Name, r.Client, round(r.ReplayLag), lag))
		}
	}
	ok = append(ok, fmt.Sprintf("%d sessions, none in a transaction older than %s; %d standbys within %s", len(sessions), txAge, len(replicas), lag))
	for _, m := range pending {
		t, run := stagingTiming(history, m)
		var sum string
		if run != nil && t.SHA256 != "" {
			var err error
			if sum, err = fileSHA256(m.Path); err != nil {
				sum = "(" + err.Error() + ")"
			}
		}
		switch {
		case run == nil:
			reasons = append(reasons, fmt.Sprintf("migration %d_%s never ran on staging (no run in %s applied it): production only runs migrations staging has run",
				m.Version, m.Name, filepath.Join(p.StagingStateDir, HistoryFile)))
		case sum != t.SHA256:
			reasons = append(reasons, fmt.Sprintf("migration %d_%s is not the file staging ran (run %s ran SHA-256 %s, the release holds %s): production only runs migrations staging has run; let staging's nightly run this one",
				m.Version, m.Name, run.ID, t.SHA256, sum))
		case t.Duration > mig:
			reasons = append(reasons, fmt.Sprintf("migration %d_%s took %s on staging (run %s), over max_migration_time %s",
				m.Version, m.Name, round(t.Duration), run.ID, mig))
		default:
			ok = append(ok, fmt.Sprintf("%d_%s took %s on staging", m.Version, m.Name, round(t.Duration)))
		}
	}
	return reasons, ok
}

// checkCommit compares the commit a promote built with the one staging's newest
// successful rebuild ran: production only runs code staging has run, and a commit pushed
// to the staging branch since (after the nightly, or by anyone) has not. It returns the
// reason to refuse, or what was found fine; neither when the release or staging's
// history records no commit (a folder source, runs recorded before commits were).
func checkCommit(history []*Report, commit, stateDir string) (reason, ok string) {
	if commit == "" {
		return "", ""
	}
	for i := len(history) - 1; i >= 0; i-- {
		rep := history[i]
		if rep.Kind != KindRebuild || rep.Outcome != OutcomeOK || rep.Release == nil || rep.Release.Commit == "" {
			continue
		}
		if rep.Release.Commit != commit {
			return fmt.Sprintf("the release is commit %s, and staging's newest successful rebuild (run %s in %s) ran %s: production only runs code staging has run; let staging's nightly run this commit first",
				commit, rep.ID, filepath.Join(stateDir, HistoryFile), rep.Release.Commit), ""
		}
		return "", fmt.Sprintf("staging ran commit %s (run %s)", commit, rep.ID)
	}
	return "", ""
}

// appendNonEmpty appends s to list unless it is "".
func appendNonEmpty(list []string, s string) []string {
	if s == "" {
		return list
	}
	return append(list, s)
}

// stagingTiming returns the newest timing of migration m in staging's history, and the
// run it comes from (nil: staging never applied it).
func stagingTiming(history []*Report, m schema.Migration) (MigrationTime, *Report) {
	for i := len(history) - 1; i >= 0; i-- {
		rep := history[i]
		if rep.Schema == nil {
			continue
		}
		for _, t := range rep.Schema.Migrations {
			if t.Version == m.Version && t.Name == m.Name {
				return t, rep
			}
		}
	}
	return MigrationTime{}, nil
}
