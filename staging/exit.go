package staging

import "errors"

// Exit statuses of the nightly and experimental programs (DESIGN.md).
const (
	ExitOK     = 0 // rebuilt (or deployed)
	ExitFailed = 1 // failed; staging left or put back as it was, report delivered or spooled
	ExitUsage  = 2 // usage or config error
	ExitLocked = 3 // another run holds the lock
	// ExitUndelivered: rebuilt (or deployed), but the report could be neither delivered
	// nor spooled: staging is fine, the people who read the report do not know it.
	ExitUndelivered = 4
	// ExitUnrecorded: rebuilt (deployed, cut, promoted), but its history line could not be
	// written: the history page, status and a promote's preflight (which reads staging's
	// migration timings from the history) do not know the run.
	ExitUnrecorded = 5
)

// ExitStatus maps a Run, Deploy or Plan error to the programs' exit status.
func ExitStatus(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrConfig):
		return ExitUsage
	case errors.Is(err, ErrLocked):
		return ExitLocked
	case errors.Is(err, ErrUndelivered):
		return ExitUndelivered
	case errors.Is(err, ErrUnrecorded):
		return ExitUnrecorded
	default:
		return ExitFailed
	}
}
