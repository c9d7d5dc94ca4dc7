package staging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/mask"
	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/internal/redact"
)

// Physical restores production's physical backup (pgBackRest) into the idle one of two
// data directories, prepares it on a side port, and switches clusters at the cutover:
// the rebuild's time follows the disk, not the indexes, and the downtime is a stop and
// a start of PostgreSQL.
const Physical Strategy = "physical"

// PhysicalConfig wires strategy Physical (the [backup] and [cluster] sections).
type PhysicalConfig struct {
	Source   physical.Source    // required: production's physical backups
	Clusters *physical.Clusters // required: the A/B slots of the staging cluster
	// Database is the backup's database ([backup] database), renamed to
	// Options.Database on the restored cluster. Required.
	Database string
	// Keep lists production's other databases kept on staging ([cluster] keep); the
	// rest are dropped, and the live cluster may hold them besides the managed ones.
	Keep []string
	// Delta restores into the idle slot with --delta when it holds an earlier copy.
	Delta bool
	// Seed copies the first rebuild's restore, before its first start, into the other
	// slot (Clusters.Seed), so that the second rebuild is a delta too. With Delta only.
	Seed bool
	// Carry lists databases of the live cluster that are not production's (an
	// experimental environment's) copied into the new cluster before the cutover
	// ([cluster] carry): writes to them after the copy are lost.
	Carry []string
	// ClearPasswords removes every role's password, production's verifiers, before the
	// post-restore SQL ([cluster] passwords = "clear"); without it, a note names the
	// roles whose md5 verifiers log in to production wherever it accepts md5.
	ClearPasswords bool
}

// ErrForeign: the live cluster holds databases this environment does not manage.
var ErrForeign = physical.ErrForeign

// physicalState is what a physical run holds.
type physicalState struct {
	set  *physical.BackupSet
	slot *physical.Slot // the slot restored into
	old  *physical.Slot // the slot live before the cutover
}

// managed returns the databases a physical environment manages on its cluster.
func (r *Rebuilder) managed() []string {
	m := []string{r.cfg.Database}
	for _, c := range r.cfg.Clones {
		m = append(m, c, c+"_next")
	}
	m = append(m, r.cfg.Physical.Keep...)
	return append(m, r.cfg.Physical.Carry...)
}

// physicalRun is strategy Physical, once the backup set is known (ps.set, waited for
// before the lock): clean → verify → restore into the idle slot → recover on the side
// port → neutralize (+ post-restore SQL) → clones → release → schema → cutover (stop
// service, switch clusters, start) → health gate, or rollback.
func (ru *run) physicalRun(ctx context.Context, ps *physicalState) error {
	cl := ru.r.cfg.Physical.Clusters
	// Clean before verify: the live cluster must be up (after a reboot, say) for verify
	// to see its databases; cleaning touches nothing but a crashed run's leftovers, and
	// only once the configuration is known not to reach production's cluster.
	err := ru.step(ctx, "clean", func(ctx context.Context) (string, error) {
		if err := cl.CheckOrigin(ru.r.cfg.Physical.Source.Origin()); err != nil {
			return "", err
		}
		did, err := cl.Repair(ctx)
		for _, d := range did {
			ru.note("%s", d)
		}
		if err == nil && ru.tookOver {
			ru.emptyKilledSlot(ctx)
		}
		live, lerr := cl.Live()
		if err == nil && lerr == nil {
			ru.hadLive = live != nil
			if live == nil {
				did = append(did, "no live cluster: first rebuild")
			}
		}
		return strings.Join(did, "; "), errors.Join(err, lerr)
	})
	if err == nil {
		err = ru.physicalVerify(ctx, ps)
	}
	if err != nil {
		ru.rep.State = ru.untouchedCluster()
		return err
	}
	release := ru.buildBehind(ctx)
	if err = ru.physicalPrepare(ctx, ps); err != nil {
		_ = release(ctx, true)
	} else if err = release(ctx, false); err == nil {
		var login string
		if login, err = ru.migrationLogin(ctx, ps); err == nil {
			ru.sideDSN = func(db string) string { return cl.SideDSNAs(ps.slot, db, login) }
			err = ru.upgrade(ctx, ru.r.cfg.Database)
		}
	}
	if err != nil {
		ru.abandonSlot(ctx, ps)
		return err
	}
	return ru.physicalCutover(ctx, ps)
}

// migrationLogin is the role the migrations log in as on the side cluster: [schema]
// role when it may log in and is no superuser there, so that the code's migrations (a
// branch's, once merged) have its rights only; a session that logged in as the
// superuser and SET ROLE could SET ROLE NONE, and as superuser run programs as the
// cluster's user (COPY ... TO PROGRAM), which reads pgBackRest's config and repository.
// Otherwise the superuser, with a note saying why when a role is configured.
func (ru *run) migrationLogin(ctx context.Context, ps *physicalState) (string, error) {
	role := ru.r.cfg.SchemaRole
	if role == "" {
		return physical.Superuser, nil
	}
	if !ru.r.cfg.Physical.Clusters.CanLogIn(role) {
		ru.note("the migrations log in as the superuser and SET ROLE %s: the clusters were made without it in ClustersConfig.Logins, so a migration could SET ROLE NONE and act as the superuser", role)
		return physical.Superuser, nil
	}
	conn, err := ru.r.cfg.Physical.Clusters.Conn(ctx, ps.slot, ru.r.cfg.Database, false)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var login, super bool
	err = conn.QueryRow(ctx, "SELECT rolcanlogin, rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1", role).Scan(&login, &super)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("%w: schema.role %q is no role of the restored cluster", ErrConfig, role)
	case err != nil:
		return "", fmt.Errorf("schema.role %q: %w", role, err)
	case !login: // a superuser too: NOLOGIN refuses its login as well
		ru.note("the migrations log in as the superuser and SET ROLE %s, which cannot log in (NOLOGIN on production): a migration could SET ROLE NONE and act as the superuser; give the role LOGIN on production so that they run with its rights only", role)
		return physical.Superuser, nil
	case super:
		return role, nil // a superuser either way
	}
	return role, nil
}

func (ru *run) untouchedCluster() string {
	return "untouched: the service, the live cluster on port " + fmt.Sprint(ru.r.cfg.Physical.Clusters.Port()) + " and the live release are as they were before the run"
}

// physicalBackup is the backup step: the newest backup set young enough, waited for.
func (ru *run) physicalBackup(ctx context.Context, ps *physicalState) error {
	pc := ru.r.cfg.Physical
	return ru.step(ctx, "backup", func(ctx context.Context) (string, error) {
		set, err := ru.latestSet(ctx)
		if err != nil {
			return "", err
		}
		ps.set = set
		ru.rep.Backup = &BackupInfo{Name: set.Label, Path: "physical:" + set.Type, Database: pc.Database,
			Created: set.Stopped, Age: set.Age(ru.r.cfg.Now()), Size: set.Size}
		return fmt.Sprintf("%s (%s), %s old, %s", set.Label, set.Type, round(ru.rep.Backup.Age), humanBytes(set.Size)), nil
	})
}

// physicalVerify is the verify step: the set names its source; production is refused as
// a target; the live cluster holds nothing this environment does not manage.
func (ru *run) physicalVerify(ctx context.Context, ps *physicalState) error {
	pc := ru.r.cfg.Physical
	return ru.step(ctx, "verify", func(ctx context.Context) (string, error) {
		if ps.set.SystemIdentifier == 0 {
			return "", fmt.Errorf("%w: the backup set names no source system_identifier", dbrestore.ErrCorrupt)
		}
		if ids := ru.r.cfg.Production; len(ids) > 0 && !slices.Contains(ids, ps.set.SystemIdentifier) {
			return "", fmt.Errorf("%w: the backup set comes from system_identifier %d, which database.production_ids does not list", dbrestore.ErrCorrupt, ps.set.SystemIdentifier)
		}
		// A rebuild checks the set (a base backup's checksum) in its restore step, before
		// the idle slot is touched; a dry run restores nothing, so it checks here: its
		// exit status says whether the rebuild would get past a corrupt backup.
		if ru.dry {
			if err := pc.Source.Verify(ctx, ps.set); err != nil {
				return "", err
			}
		}
		foreign, err := pc.Clusters.Foreign(ctx, ru.r.managed())
		if err != nil {
			return "", err
		}
		if len(foreign) > 0 {
			return "", fmt.Errorf("%w: %s (a physical rebuild replaces the whole cluster; list them in cluster.carry to copy them into the new one, in cluster.keep to keep production's copies of them, or move them to another server)",
				ErrForeign, strings.Join(foreign, ", "))
		}
		return fmt.Sprintf("backup set of system_identifier %d; the staging cluster is restage's and holds only this environment's databases", ps.set.SystemIdentifier), nil
	})
}

// latestSet waits for a backup set younger than MaxAge, polling every Poll for at most
// Wait (the last poll comes at Wait, not a whole Poll after it).
func (ru *run) latestSet(ctx context.Context) (*physical.BackupSet, error) {
	o := ru.r.cfg.Backup
	poll := o.Poll
	if poll <= 0 {
		poll = 10 * time.Second
	}
	deadline := ru.r.cfg.Now().Add(o.Wait)
	for {
		set, err := ru.r.cfg.Physical.Source.Latest(ctx)
		if err == nil && (o.MaxAge == 0 || set.Age(ru.r.cfg.Now()) <= o.MaxAge) {
			return set, nil
		}
		if err == nil {
			err = fmt.Errorf("%w: newest backup set %s is %s old (backup.max_age %s)", dbrestore.ErrTooOld, set.Label, round(set.Age(ru.r.cfg.Now())), o.MaxAge)
		}
		if !errors.Is(err, dbrestore.ErrNoBackup) && !errors.Is(err, dbrestore.ErrTooOld) {
			return nil, err
		}
		remaining := deadline.Sub(ru.r.cfg.Now())
		if remaining <= 0 {
			if o.Wait > 0 {
				return nil, fmt.Errorf("%w (waited %s)", err, round(o.Wait))
			}
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(min(poll, remaining)): // never past backup.wait
		}
	}
}

// seedOther seeds the slot that is not s from it (the first rebuild: that slot was
// never made), for the next rebuild's delta, and says so for the restore step's detail.
// A failure only costs that delta: it is a note, not the rebuild's failure.
func (ru *run) seedOther(ctx context.Context, s *physical.Slot) string {
	start := time.Now()
	seeded, err := ru.r.cfg.Physical.Clusters.Seed(ctx, s)
	switch {
	case err != nil:
		ru.note("the other slot was not seeded from %s (the next rebuild is a full copy): %v", s, err)
		return ""
	case seeded == nil:
		return ""
	}
	return fmt.Sprintf("; %s seeded from it for the next rebuild's delta in %s", seeded, round(time.Since(start)))
}

// physicalPrepare restores into the idle slot, recovers it on the side port, makes it
// harmless and staging's (post-restore SQL included), and makes the clones.
func (ru *run) physicalPrepare(ctx context.Context, ps *physicalState) error {
	steps := []func(context.Context, *physicalState) error{ru.physicalRestore, ru.physicalRecover, ru.physicalNeutralize}
	if len(ru.r.cfg.Physical.Carry) > 0 {
		steps = append(steps, ru.physicalCarry)
	}
	if len(ru.r.cfg.Clones) > 0 {
		steps = append(steps, ru.physicalClones)
	}
	for _, step := range steps {
		if err := step(ctx, ps); err != nil {
			return err
		}
	}
	return nil
}

// physicalRestore is the restore step: the backup set into the idle slot, a delta when
// the slot allows one; with [cluster] seed, the other slot is seeded from it.
func (ru *run) physicalRestore(ctx context.Context, ps *physicalState) error {
	pc := ru.r.cfg.Physical
	cl := pc.Clusters
	timeout := ru.r.cfg.Timeouts.Restore
	return ru.step(ctx, "restore", func(ctx context.Context) (string, error) {
		return bounded(ctx, timeout, "database.restore_timeout", func(ctx context.Context) (string, error) {
			delta := pc.Delta && cl.Delta()
			how := "full copy"
			if delta {
				how = "delta, by checksums"
				if cl.DeltaByTime() {
					how = "delta, by size and time"
				}
			}
			start := time.Now()
			s, err := cl.Restore(ru.progressContext(ctx), pc.Source, ps.set, delta)
			if s != nil {
				ps.slot = s
			}
			if err != nil {
				return "", err
			}
			d := fmt.Sprintf("%s into %s (%s) in %s", ps.set.Label, s, how, round(time.Since(start)))
			if pc.Delta && pc.Seed {
				d += ru.seedOther(ctx, s)
			}
			return d, nil
		})
	})
}

// physicalRecover is the recover step: the restored slot started on the side port, with
// its socket only, recovered and promoted.
func (ru *run) physicalRecover(ctx context.Context, ps *physicalState) error {
	cl := ru.r.cfg.Physical.Clusters
	return ru.step(ctx, "recover", func(ctx context.Context) (string, error) {
		start := time.Now()
		if err := cl.StartSide(ctx, ps.slot); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s recovered to the backup's consistent point and promoted, on the side port with its socket only, in %s", ps.slot, round(time.Since(start))), nil
	})
}

// physicalNeutralize is the neutralize step: the slot made harmless (Neutralize), its
// md5 verifiers named, then masked and given the post-restore SQL.
func (ru *run) physicalNeutralize(ctx context.Context, ps *physicalState) error {
	pc := ru.r.cfg.Physical
	cl := pc.Clusters
	timeout := ru.r.cfg.Timeouts.Restore
	return ru.step(ctx, "neutralize", func(ctx context.Context) (string, error) {
		return bounded(ctx, timeout, "database.restore_timeout", func(ctx context.Context) (string, error) {
			d, err := cl.Neutralize(ctx, ps.slot, physical.NeutralizeOptions{From: pc.Database, To: ru.r.cfg.Database, Keep: pc.Keep,
				ClearPasswords: pc.ClearPasswords})
			if err != nil {
				return d, err
			}
			if !pc.ClearPasswords {
				md5, err := cl.MD5Roles(ctx, ps.slot)
				if err != nil {
					return d, err
				}
				if len(md5) > 0 {
					ru.note("roles %s keep production's md5 password verifiers on staging: whoever reads them (a staging superuser) can log in to production as them wherever it accepts md5 authentication; cluster.passwords = \"clear\" removes every role's password (set staging's in the post-restore SQL)", strings.Join(md5, ", "))
				}
			}
			if rules := ru.r.cfg.Restore.Mask; rules != nil {
				md, err := ru.maskSlot(ctx, ps.slot, rules)
				if err != nil {
					return d, err
				}
				d += "; " + md
			}
			if files := ru.r.cfg.Restore.PostRestore; len(files) > 0 {
				fr, err := cl.ExecFiles(ctx, ps.slot, ru.r.cfg.Database, ru.r.cfg.SchemaRole, files)
				if err != nil {
					return d, fmt.Errorf("post-restore: %w", err)
				}
				written := fr.Written
				d += fmt.Sprintf("; post-restore SQL: %d file(s)", len(files))
				if len(fr.Notices) > 0 {
					d += " (" + strings.Join(fr.Notices, "; ") + ")"
				}
				if len(written) > 0 && !ru.r.cfg.Restore.KeepOldRows {
					if err := ru.rewriteSlot(ctx, ps.slot, written); err != nil {
						return d, fmt.Errorf("post-restore: %w", err)
					}
					d += fmt.Sprintf(", then rewrote the %d table(s) they updated or deleted rows of (%s) and removed the WAL written before",
						len(written), strings.Join(written, ", "))
				}
			}
			return d, nil
		})
	})
}

// physicalCarry is the carry step: the databases [cluster] carry names copied from the
// live cluster into the slot.
func (ru *run) physicalCarry(ctx context.Context, ps *physicalState) error {
	pc := ru.r.cfg.Physical
	cl := pc.Clusters
	timeout := ru.r.cfg.Timeouts.Restore
	return ru.step(ctx, "carry", func(ctx context.Context) (string, error) {
		return bounded(ctx, timeout, "database.restore_timeout", func(ctx context.Context) (string, error) {
			var did []string
			for _, db := range pc.Carry {
				ok, err := cl.Carry(ctx, ps.slot, db)
				if err != nil {
					return strings.Join(did, "; "), err
				}
				if ok {
					did = append(did, db+" copied from the live cluster")
				} else {
					did = append(did, db+": not on the live cluster")
				}
			}
			return strings.Join(did, "; "), nil
		})
	})
}

// physicalClones is the clones step: each clone made as a template copy in the slot.
func (ru *run) physicalClones(ctx context.Context, ps *physicalState) error {
	cl := ru.r.cfg.Physical.Clusters
	return ru.step(ctx, "clones", func(ctx context.Context) (string, error) {
		var made []string
		for _, c := range ru.r.cfg.Clones {
			name := c + "_next"
			if err := cl.Clone(ctx, ps.slot, ru.r.cfg.Database, name); err != nil {
				return strings.Join(made, ", "), fmt.Errorf("clone %s: %w", name, err)
			}
			made = append(made, name)
		}
		return strings.Join(made, ", "), nil
	})
}

// maskSlot masks the restored database in place with SQL (mask.Apply), on the side
// cluster before anything but restage can reach it: a column that needs a decision and
// has none fails the run before the cutover (safety rule 11).
func (ru *run) maskSlot(ctx context.Context, s *physical.Slot, rules *mask.Rules) (string, error) {
	conn, err := ru.r.cfg.Physical.Clusters.Conn(ctx, s, ru.r.cfg.Database, false)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := mask.Apply(ctx, conn, rules, mask.ApplyOptions{})
	if err != nil {
		return "", ru.maskErr(err)
	}
	ru.rep.Mask = maskInfo(res)
	if err := ru.r.cfg.Physical.Clusters.DropWAL(ctx, s); err != nil {
		return "", fmt.Errorf("remove the WAL written before the masking: %w", err)
	}
	if err := ru.checkKept(ctx, s, rules); err != nil {
		return "", err
	}
	return fmt.Sprintf("masked %d columns and %d tables with SQL in %s", len(res.Columns), len(res.Tables), round(res.Duration)), nil
}

// rewriteSlot rewrites the tables the post-restore SQL updated or deleted rows of
// (mask.Rewrite), on the side cluster, then removes the WAL written so far: their old
// row versions, and the full-page images of the changes, hold the values the SQL
// replaced (production's, when it masks).
func (ru *run) rewriteSlot(ctx context.Context, s *physical.Slot, tables []string) error {
	conn, err := ru.r.cfg.Physical.Clusters.Conn(ctx, s, ru.r.cfg.Database, false)
	if err != nil {
		return err
	}
	err = mask.Rewrite(ctx, conn, tables)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	if err := ru.r.cfg.Physical.Clusters.DropWAL(ctx, s); err != nil {
		return fmt.Errorf("remove the WAL written before the rewrite: %w", err)
	}
	return nil
}

// checkKept fails closed on production's databases kept on staging ([cluster] keep, and
// postgres and template1, which a cluster always has, as production's copies): the
// rules are [database] name's, so a kept database must hold no column that the
// classification marks personal, nor large objects.
func (ru *run) checkKept(ctx context.Context, s *physical.Slot, rules *mask.Rules) error {
	conn, err := ru.r.cfg.Physical.Clusters.Conn(ctx, s, ru.r.cfg.Database, false)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn AND datname IN ('postgres', 'template1') ORDER BY 1")
	var system []string
	if err == nil {
		system, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return fmt.Errorf("physical: databases: %w", err)
	}
	var bad []string
	for _, db := range slices.Concat(ru.r.cfg.Physical.Keep, system) {
		conn, err := ru.r.cfg.Physical.Clusters.Conn(ctx, s, db, false)
		if err != nil {
			return err
		}
		cols, err := mask.CatalogColumns(ctx, conn)
		conn.Close(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		for _, c := range rules.Personal(cols) {
			bad = append(bad, db+"."+c)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	slices.Sort(bad)
	return ru.maskErr(fmt.Errorf("production's databases kept on staging (cluster.keep, and postgres and template1, which every cluster keeps) are not masked ([mask] applies to database.name); drop their database from cluster.keep, or move these tables out of postgres and template1 on production: %w",
		&mask.UnmaskedError{Columns: bad}))
}

// abandonSlot ends a run that failed before its cutover began: the slot and the release
// it prepared are discarded (discardSlot), and the report says the live cluster is as it
// was.
func (ru *run) abandonSlot(ctx context.Context, ps *physicalState) {
	ru.discardSlot(ctx, ps)
	ru.rep.State = ru.untouchedCluster()
}

// discardSlot stops the slot prepared by a run that fails before its cutover; its data
// stay for the next run's delta restore, unless the run masks (dropUnmasked).
func (ru *run) discardSlot(ctx context.Context, ps *physicalState) {
	ctx, cancel := ru.critical(ctx)
	defer cancel()
	if ru.release != nil {
		if err := ru.r.cfg.Releases.Discard(ctx, ru.release); err != nil {
			ru.log.Warn("could not mark the unused release failed", keyErr, err)
		}
	}
	if ps.slot == nil {
		return
	}
	if ru.dropUnmasked(ctx, ps.slot, "which did not go live") {
		return
	}
	if err := ru.r.cfg.Physical.Clusters.Discard(ctx, ps.slot); err != nil {
		ru.log.Warn("could not stop the unused cluster; the next run will", "slot", ps.slot.Name, keyErr, redact.String(err.Error()))
	}
}

// sanitises reports whether the environment masks the restored cluster: with [mask]
// (Restore.Mask), or with post-restore SQL whose changes are rewritten (not
// Restore.KeepOldRows: the SQL is taken to replace personal data).
func (r *Rebuilder) sanitises() bool {
	return r.cfg.Restore.Mask != nil || (len(r.cfg.Restore.PostRestore) > 0 && !r.cfg.Restore.KeepOldRows)
}

// emptyKilledSlot empties the idle slot after a run that was killed, when the
// environment masks (sanitises): that run may have restored production's data into it
// and died before masking it (Repair empties only a slot whose restore was cut short). A
// failure is a note: this run restores over that slot and masks it anyway.
func (ru *run) emptyKilledSlot(ctx context.Context) {
	if !ru.r.sanitises() {
		return
	}
	idle, err := ru.r.cfg.Physical.Clusters.Idle()
	if err == nil {
		if _, serr := os.Stat(idle.Data); errors.Is(serr, os.ErrNotExist) {
			return
		}
		ru.dropUnmasked(ctx, idle, "left by a run that was killed")
		return
	}
	ru.note("the idle slot, left by a run that was killed, may hold production's unmasked data: %v", err)
}

// dropUnmasked empties slot s, which is not live (why says how), when the environment
// masks (sanitises), and says whether it did: s may hold production's data unmasked (a
// run failed or died before or while masking it), and a masked copy still holds the old
// values in its dead rows and WAL. The next restore into it is then a full copy. A
// failure is a note.
func (ru *run) dropUnmasked(ctx context.Context, s *physical.Slot, why string) bool {
	if !ru.r.sanitises() {
		return false
	}
	how := "with [mask]"
	if ru.r.cfg.Restore.Mask == nil {
		how = "with post-restore SQL (database.post_restore_rewrite: it masks)"
	}
	if err := ru.r.cfg.Physical.Clusters.Empty(ctx, s); err != nil {
		ru.note("%s, %s, may hold production's unmasked data and could not be emptied; remove its data folder: %v", s, why, err)
		return false
	}
	ru.note("emptied %s, %s: %s it may hold production's unmasked data (the next restore into it is a full copy)", s, why, how)
	return true
}

// physicalCutover stops the service, switches clusters, activates the release and
// starts the service behind the health gate; on failure the old cluster and release
// come back.
func (ru *run) physicalCutover(ctx context.Context, ps *physicalState) error {
	cl := ru.r.cfg.Physical.Clusters
	// A checkpoint now makes the side cluster's shutdown at the cutover short.
	if err := cl.Checkpoint(ctx, ps.slot); err != nil {
		ru.log.Warn("checkpoint before the cutover failed", keyErr, err)
	}
	in := &intent{Run: ru.rep.ID, Kind: ru.rep.Kind, PID: os.Getpid(), Started: ru.r.cfg.Now(), Live: ru.r.cfg.Database,
		Prev: ru.r.prev(), Old: ru.r.old(), Failed: ru.r.failed(), HadLive: ru.hadLive, Release: ru.release.ID, Slot: ps.slot.Name}
	// Which slot is live now is what a repair of a killed cutover puts back: unknown,
	// nothing is touched (fail closed), and the report names the cutover as the step
	// that failed.
	live, err := cl.Live()
	if err != nil {
		err = fmt.Errorf("which cluster is live, recorded before the cutover: %w", err)
	} else {
		if live != nil {
			in.SlotWas = live.Name
		}
		err = ru.record(in, phaseStopping)
	}
	if err != nil {
		ru.abandonSlot(ctx, ps)
		return ru.step(ctx, "cutover", func(context.Context) (string, error) { return "", err })
	}
	cctx, cancel := ru.critical(ctx)
	err = ru.stop(cctx)
	cancel()
	if err != nil {
		return ru.stopFailed(ctx, err, func(ctx context.Context) { ru.discardSlot(ctx, ps) }, ru.untouchedCluster, "cluster")
	}
	cctx, cancel = ru.critical(ctx)
	defer cancel()
	var switched, activated bool
	err = ru.step(cctx, "cutover", func(ctx context.Context) (string, error) {
		if err := ru.record(in, phaseSwapping); err != nil {
			return "", err
		}
		start := time.Now()
		old, err := cl.Switch(ctx, ps.slot)
		ps.old = old
		switched = true // even half done, the rollback puts the old cluster back
		if err != nil {
			return "", err
		}
		if err := ru.record(in, phaseSwapped); err != nil {
			return "", err
		}
		d := fmt.Sprintf("%s is live on port %d (switched in %s)", ps.slot, cl.Port(), round(time.Since(start)))
		if old != nil {
			d += fmt.Sprintf("; %s stopped, kept for a rollback and the next delta restore", old)
		}
		if err := ru.activate(ctx, in); err != nil {
			return "", err
		}
		activated = true
		return d + "; current -> " + ru.release.ID, nil
	})
	if err == nil {
		if err = ru.startHealthy(cctx, "start"); err == nil {
			ru.up()
			ru.clearIntent()
			ru.rep.State = fmt.Sprintf("%s serves release %s on %s, cluster %s on port %d, healthy", ru.r.cfg.Environment, ru.release.ID, ru.r.cfg.Database, ps.slot, cl.Port())
			ru.prune(cctx)
			return nil
		}
	}
	return ru.physicalRollback(ctx, err, ps, switched, activated)
}

// physicalRollback puts the previous cluster and release back and starts the service
// again, with a budget of its own.
func (ru *run) physicalRollback(ctx context.Context, cause error, ps *physicalState, switched, activated bool) error {
	cl := ru.r.cfg.Physical.Clusters
	return ru.rollbackWith(ctx, cause, activated, "cluster", func(ctx context.Context) ([]string, error) {
		if !switched {
			if ru.dropUnmasked(ctx, ps.slot, "which did not go live") {
				return nil, nil
			}
			if err := cl.Discard(ctx, ps.slot); err != nil {
				return nil, fmt.Errorf("cluster: %w", err)
			}
			return nil, nil
		}
		if err := cl.SwitchBack(ctx, ps.slot, ps.old); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if ps.old == nil {
			return []string{fmt.Sprintf("%s stopped (there was no cluster before)", ps.slot)}, nil
		}
		return []string{fmt.Sprintf("%s is live again on port %d", ps.old, cl.Port())}, nil
	})
}

// repairPhysical puts staging back as it was before a physical cutover that a killed run
// left half done: the previous cluster live, `current` on the release before, the
// service started.
func (ru *run) repairPhysical(ctx context.Context, in *intent) ([]string, error) {
	cl := ru.r.cfg.Physical.Clusters
	var did []string
	if err := ru.r.cfg.Service.Stop(ctx); err != nil {
		return did, fmt.Errorf("stop the service: %w", err)
	}
	live, err := cl.Live()
	if err != nil {
		return did, err
	}
	if in.Slot != "" && live != nil && live.Name == in.Slot {
		idle, err := cl.Idle()
		if err != nil {
			return did, err
		}
		var old *physical.Slot
		if in.SlotWas != "" {
			old = idle
		}
		if err := cl.SwitchBack(ctx, live, old); err != nil {
			return did, fmt.Errorf("cluster: %w", err)
		}
		did = append(did, "the previous cluster is live again")
	}
	more, err := cl.Repair(ctx)
	did = append(did, more...)
	if err != nil {
		return did, err
	}
	d, err := ru.repairRelease(ctx, in)
	did = append(did, d...)
	if err != nil {
		return did, err
	}
	if err := ru.startService(ctx); err != nil {
		return did, fmt.Errorf("start the service: %w", err)
	}
	return append(did, "service started"), nil
}

// physicalPlan is a physical dry run: which backup set a rebuild would take, and
// whether the checks before the restore pass.
func (ru *run) physicalPlan(ctx context.Context) error {
	ps := &physicalState{}
	if err := ru.physicalBackup(ctx, ps); err != nil {
		return err
	}
	if err := ru.physicalVerify(ctx, ps); err != nil {
		return err
	}
	pc := ru.r.cfg.Physical
	idle, err := pc.Clusters.Idle()
	if err != nil {
		return err
	}
	how := "a full copy"
	if pc.Delta && pc.Clusters.Delta() {
		how = "--delta over the copy it holds, by checksums"
		if pc.Clusters.DeltaByTime() {
			how = "--delta over the copy it holds, by size and time"
		}
	}
	ru.note("a rebuild would restore %s into %s (%s)", ps.set.Label, idle, how)
	// The migrations that would run are known only once the set is restored (its schema
	// level is inside the cluster); the release is known now.
	return ru.planRelease(ctx)
}
