package staging

import "errors"

// Errors callers test with errors.Is.
var (
	ErrLocked = errors.New("another rebuild holds the lock")
	ErrBusy   = errors.New("cron jobs still hold the lock")
	// ErrUndelivered: the run succeeded, but its report could be neither delivered nor
	// spooled (ExitUndelivered).
	ErrUndelivered = errors.New("succeeded, but the report could be neither delivered nor spooled")
	// ErrUnrecorded: the run (or the train's cut) succeeded, but its history line could
	// not be written (ExitUnrecorded).
	ErrUnrecorded = errors.New("succeeded, but the history could not be written")
)
