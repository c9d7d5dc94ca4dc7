// Package redact removes secrets from text: the one redaction function of restage
// (safety rule 10). It knows passwords in URLs of any scheme (postgres://u:pw@h,
// https://user:token@host), credentials alone in an http(s) URL's user part
// (https://token@host), password settings of keyword/value DSNs and environment lines
// (password=..., password='a\'b c', PGPASSWORD=...), and any secret a caller names. It
// also withholds the values of production's rows that PostgreSQL quotes in its messages
// (Rows), so that no report carries them.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mark replaces every secret.
const Mark = "xxxxx"

var (
	// scheme://user:password@ (the user may be empty).
	urlPassword = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*):\S*@`)
	// http(s)://token@: a user part alone is a credential for http(s) (git's tokens).
	urlToken = regexp.MustCompile(`(?i)(https?://)[^:/@\s]+@`)
	// password=..., quoted with libpq's rules or bare, any case, also PGPASSWORD=... .
	kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'"]+)`)
)

// String returns s with every secret removed: each of secrets (and its URL-escaped
// forms) and every password the patterns above find; and with row values withheld (Rows).
func String(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		for _, f := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret),
			url.UserPassword("u", secret).String()[2:]} {
			s = strings.ReplaceAll(s, f, Mark)
		}
	}
	s = urlPassword.ReplaceAllString(s, "${1}:"+Mark+"@")
	s = urlToken.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasSuffix(m, Mark+"@") {
			return m
		}
		return urlToken.ReplaceAllString(m, "${1}"+Mark+"@")
	})
	return Rows(kvPassword.ReplaceAllString(s, "${1}"+Mark))
}

// Error returns err with secrets removed from its message; the result still unwraps to
// err, so errors.Is and errors.As keep working. It returns err itself when its message
// holds none, and nil for nil.
func Error(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := String(msg, secrets...)
	if clean == msg {
		return err
	}
	return &redacted{msg: clean, err: err}
}

// redacted is an error whose message has its secrets removed.
type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
