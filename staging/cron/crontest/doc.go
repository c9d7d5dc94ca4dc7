// Package crontest is what the cron runner's tests and the cronrunner program's share:
// a test binary that doubles as a job (it runs a little script of words instead of
// the tests), jobs that run it, and the waits and checks around them.
//
//	func TestMain(m *testing.M) {
//		crontest.RunHelper() // the test binary started as a job runs its script and exits
//		os.Exit(m.Run())
//	}
//
//	j := crontest.Job(t, "nightly-report", "* * * * *", "append", file, "ran", "exit", "3")
package crontest
