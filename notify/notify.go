package notify

import (
	"context"
	"errors"
	"time"
)

// Status says whether the reported run succeeded.
type Status string

// Report statuses.
const (
	StatusOK     Status = "ok"
	StatusFailed Status = "failed"
)

// Message is one report to deliver.
type Message struct {
	ID          string    `json:"id"`          // unique; a spooled message is delivered once per ID
	Environment string    `json:"environment"` // e.g. "staging"
	Topic       string    `json:"topic"`       // e.g. "staging-rebuild": subject tag and Keywords header
	Status      Status    `json:"status"`
	Subject     string    `json:"subject"`            // without the topic tag
	Body        string    `json:"body"`               // plain text
	Log         []byte    `json:"log,omitempty"`      // full log, sent as an attachment
	LogName     string    `json:"log_name,omitempty"` // attachment file name; "": "<environment>.log"
	Time        time.Time `json:"time"`
}

// Notifier delivers reports.
type Notifier interface {
	// Notify delivers m or returns why it could not.
	Notify(ctx context.Context, m *Message) error
}

// Errors callers test with errors.Is.
var (
	ErrSpooled = errors.New("report not delivered; spooled for the next run")
	// ErrInvalidConfig wraps every configuration error; the message names the field.
	ErrInvalidConfig = errors.New("invalid notify configuration")
	// ErrInvalidMessage is returned for a nil message or one that cannot be spooled.
	ErrInvalidMessage = errors.New("invalid report message")
	// ErrCorruptSpoolFile is returned for a spool file that cannot be read back; the file is
	// moved aside (renamed to *.corrupt), never deleted.
	ErrCorruptSpoolFile = errors.New("corrupt spool file")
	// ErrRejected wraps a delivery error where the target answered and refused the report
	// for good (an SMTP 5xx reply; a webhook 4xx other than 408 and 429): the target is
	// up, so a Spool goes on with the next spooled report instead of stopping there.
	ErrRejected = errors.New("report rejected by the target")
)
