package staging

import "errors"

// Errors callers test with errors.Is.
var (
	ErrLocked = errors.New("another rebuild holds the lock")
	ErrBusy   = errors.New("cron jobs still hold the lock")
)
