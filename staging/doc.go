// Package staging rebuilds a staging environment from production.
//
// A Rebuilder composes the other packages: it waits for the newest production backup
// (dbrestore), restores it beside the live database, builds a new release (codesync),
// upgrades the new database's schema with the new release's migrations (schema), then
// stops the service, swaps database names and the `current` symlink, starts the service
// and waits until it is healthy (svcctl), rolling everything back if it is not. The
// whole run holds the environment's lock, and ends with a Report delivered by notify.
package staging
