// Package schema keeps a database at the patch level its code needs.
//
// It reads a release's golang-migrate folder, reports a database's status (version, dirty
// flag, pending migrations), applies pending migrations one at a time so that each one's
// duration is known (staging's timings gate production rollouts), and checks that the
// patch level matches the code. A dirty database is never forced automatically.
//
// MigrateUpgrader runs golang-migrate with its pgx/v5 driver and file source:
//
//	u, err := schema.New(schema.Config{Logger: logger})
//	target := schema.Target{DSN: "postgres://postgres@staging-db/launchpad_staging_next",
//		Dir: "/srv/staging/releases/20260101T0300/database/migrations", Role: "launchpad_owner"}
//	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute) // bounds the running migration too
//	defer cancel()
//	plan, err := u.Plan(ctx, target)   // what would run (dry run)
//	res, err := u.Upgrade(ctx, target) // res.Applied: each migration with its duration
//	// errors.Is(err, schema.ErrDirty): fix by hand, then u.Force(ctx, target, version)
//
// Before anything touches the database the folder is validated (missing folder, malformed
// names, duplicate versions: ErrMigrations). Upgrade refuses a dirty database (ErrDirty)
// and one ahead of the code (ErrAhead), stops when ctx ends (between migrations, or by
// having PostgreSQL cancel the running one), runs everything as Target.Role when set, reports a
// failing migration as a *MigrationError with PostgreSQL's message and the line and column
// in the file, and checks the final version (ErrMismatch). Every call closes its
// connections before it returns, so the database can be renamed right after.
package schema
