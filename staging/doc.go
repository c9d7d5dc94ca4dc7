// Package staging rebuilds a staging environment from production.
//
// A Rebuilder composes the other packages: it waits for the newest production backup
// (dbrestore), restores it beside the live database, builds a new release (codesync),
// upgrades the new database's schema with the new release's migrations (schema), then
// stops the service, swaps database names and the `current` symlink, starts the service
// and waits until it is healthy (svcctl), rolling everything back if it is not. The
// whole run holds the environment's lock, and ends with a Report delivered by notify.
// Deploy does the same without a restore (the experimental environment), Plan is a dry
// run. Promote, only for a production environment (LoadProduction, OpenProduction:
// role = "production"), releases code and runs migrations in place after a preflight,
// never restoring, copying or renaming a database; package staging/train cuts the
// staging branch and reports where every environment stands. Package staging/cron runs
// cron jobs that never overlap a rebuild.
//
// From a config file (the nightly program):
//
//	cfg, err := staging.LoadEnvironment("/etc/restage/staging.toml")
//	if err != nil {
//		return err // wraps staging.ErrConfig and names the key
//	}
//	rb, err := staging.Open(cfg, staging.OpenOptions{})
//	if err != nil {
//		return err
//	}
//	defer rb.Close()
//	report, err := rb.Run(ctx)
//	fmt.Print(report.Text())
//	os.Exit(staging.ExitStatus(err))
//
// Or wired by hand from any implementations of the parts' interfaces, with New(Config).
package staging
