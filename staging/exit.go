package staging

import "errors"

// Exit statuses of the nightly and experimental programs (DESIGN.md).
const (
	ExitOK     = 0 // rebuilt (or deployed)
	ExitFailed = 1 // failed; staging left or put back as it was, report delivered or spooled
	ExitUsage  = 2 // usage or config error
	ExitLocked = 3 // another run holds the lock
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
	default:
		return ExitFailed
	}
}
