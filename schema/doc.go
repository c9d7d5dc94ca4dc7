// Package schema keeps a database at the patch level its code needs.
//
// It reads a release's golang-migrate folder, reports a database's status (version, dirty
// flag, pending migrations), applies pending migrations one at a time so that each one's
// duration is known (staging's timings gate production rollouts), and checks that the
// patch level matches the code. A dirty database is never forced automatically.
package schema
