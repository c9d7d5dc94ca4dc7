package notify

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Log keys used by this package.
const (
	logKeyID       = "report_id"
	logKeyTopic    = "topic"
	logKeyStatus   = "status"
	logKeyTarget   = "target"
	logKeyFile     = "file"
	logKeyError    = "error"
	logKeyPending  = "pending"
	logKeyDuration = "duration"
)

// NewID returns a new unique, sortable message ID (UTC time plus 64 random bits), safe
// for file names, Message-ID headers and JSON.
func NewID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(b[:])
}

// FullSubject returns the subject line every notifier uses: "[<topic>] <subject>", with
// "FAILED: " (or the upper-cased status, for a status other than ok) put before the
// subject unless the subject already names it. An empty topic drops the tag.
func FullSubject(m *Message) string {
	subject := oneLine(m.Subject)
	if subject == "" {
		subject = "report"
		if m.Environment != "" {
			subject = oneLine(m.Environment) + " report"
		}
	}
	if m.Status != StatusOK && m.Status != "" {
		st := strings.ToUpper(oneLine(string(m.Status)))
		if !strings.Contains(subject, st) {
			subject = st + ": " + subject
		}
	}
	if t := oneLine(m.Topic); t != "" {
		subject = "[" + t + "] " + subject
	}
	return subject
}

// LogName returns the attachment name of m's log: m.LogName, or "<environment>.log"
// ("report.log" without an environment).
func LogName(m *Message) string {
	if m.LogName != "" {
		return m.LogName
	}
	if m.Environment != "" {
		return safeName(m.Environment) + ".log"
	}
	return "report.log"
}

// Render formats m as plain text, as the Writer notifier prints it: the subject line, a
// summary of the fields, a blank line and the body. The log itself is not included, only
// its name and size.
func Render(m *Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Subject: %s\n", FullSubject(m))
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, oneLine(v))
		}
	}
	field("Environment", m.Environment)
	field("Topic", m.Topic)
	field("Status", string(m.Status))
	if !m.Time.IsZero() {
		field("Time", m.Time.Format(time.RFC3339))
	}
	field("ID", m.ID)
	if len(m.Log) > 0 {
		fmt.Fprintf(&b, "Log: %s (%d bytes)\n", LogName(m), len(m.Log))
	}
	b.WriteString("\n")
	body := m.Body
	b.WriteString(body)
	if body != "" && !strings.HasSuffix(body, "\n") {
		b.WriteString("\n")
	}
	return b.String()
}

// oneLine folds control characters (newlines included) into spaces, so that a value can
// go in a header or a summary line.
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// safeName maps s to a string usable as a file name component.
func safeName(s string) string {
	out := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	out = strings.TrimLeft(out, ".")
	if out == "" {
		return "_"
	}
	return out
}

// checkMessage rejects nil messages.
func checkMessage(m *Message) error {
	if m == nil {
		return fmt.Errorf("%w: nil message", ErrInvalidMessage)
	}
	return nil
}

// excerpt returns at most n bytes of b as one line, marking truncation.
func excerpt(b []byte, n int) string {
	s := string(b)
	cut := false
	if len(s) > n {
		s = s[:n]
		// Do not split a UTF-8 sequence.
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
		cut = true
	}
	s = oneLine(s)
	if cut {
		s += "…"
	}
	return s
}
