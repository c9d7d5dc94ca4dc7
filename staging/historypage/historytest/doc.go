// Package historytest records histories of nightly rebuilds, for the tests of what
// reads a history (the history page and its program). It is test support: installed
// programs must not link it.
//
// Each night is a run of the real staging.Rebuilder, which appends its report to the
// state folder's history as every rebuild does, so a test reads it back with
// staging.History and never depends on the history's encoding. The Rebuilder's parts
// are stand-ins that take no server and no time: they move a virtual clock forward by
// what their real counterparts take on a production database of about 38 GB (a verify
// at 450 MB/s, a restore at about 60 MB/s, a weekly release train that lets migrations
// pile up on staging), so the reports carry realistic step durations, downtimes,
// backup ages and sizes, releases and migrations. Releases are built for real by
// codesync into the recording's folder. Three nights fail, as nights do: the restore
// runs out of disk (night 9), the health gate fails after the cutover and the run is
// rolled back (night 17), a migration times out on a lock (night 25).
//
//	rec, err := historytest.Record(ctx, historytest.Options{Dir: t.TempDir(), Nights: 30})
//	reports, err := staging.History(rec.StateDir)
package historytest
