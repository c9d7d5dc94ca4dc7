package dbrestore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/restage/restage/internal/redact"
)

// connString is a parsed libpq connection string: a postgres:// URL or keyword=value pairs.
// It exists so that passwords can be taken out of what external programs see on their
// command line (they get them through PGPASSWORD) and out of every message.
type connString struct {
	u  *url.URL // URL form; nil for keyword/value form
	kv []kvPair // keyword/value form
}

type kvPair struct{ key, value string }

var errBadDSN = errors.New("malformed connection string")

// parseConnString parses a postgres:// or postgresql:// URL or a keyword/value string.
// Its errors never contain the string itself.
func parseConnString(s string) (*connString, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%w: not a valid URL", errBadDSN)
		}
		return &connString{u: u}, nil
	}
	kv, err := parseKeywordValue(s)
	if err != nil {
		return nil, err
	}
	return &connString{kv: kv}, nil
}

// parseKeywordValue parses libpq's "key = value key2 = 'quoted \' value'" form.
func parseKeywordValue(s string) ([]kvPair, error) {
	var pairs []kvPair
	i := 0
	skipSpace := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skipSpace()
		if i >= len(s) {
			return pairs, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skipSpace()
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("%w: expected key=value", errBadDSN)
		}
		i++ // '='
		skipSpace()
		var val strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '\'' {
					i++
					closed = true
					break
				}
				val.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("%w: unterminated quoted value of %q", errBadDSN, key)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					val.WriteByte(s[i+1])
					i += 2
					continue
				}
				val.WriteByte(s[i])
				i++
			}
		}
		pairs = append(pairs, kvPair{key: key, value: val.String()})
	}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func (c *connString) clone() *connString {
	out := &connString{}
	if c.u != nil {
		u := *c.u
		if c.u.User != nil {
			ui := *c.u.User
			u.User = &ui
		}
		out.u = &u
	}
	out.kv = append([]kvPair(nil), c.kv...)
	return out
}

// password returns the password the string carries, or "".
func (c *connString) password() string {
	if c.u != nil {
		if p, ok := c.u.User.Password(); ok && p != "" {
			return p
		}
		return c.u.Query().Get("password")
	}
	var p string
	for _, kv := range c.kv {
		if kv.key == "password" {
			p = kv.value
		}
	}
	return p
}

// without returns a copy without the setting key (a URL's query parameter, or a
// keyword=value pair).
func (c *connString) without(key string) *connString {
	out := c.clone()
	if out.u != nil {
		if q := out.u.Query(); q.Has(key) {
			q.Del(key)
			out.u.RawQuery = q.Encode()
		}
		return out
	}
	out.kv = slices.DeleteFunc(out.kv, func(kv kvPair) bool { return kv.key == key })
	return out
}

// withoutPassword returns a copy without any password.
func (c *connString) withoutPassword() *connString {
	out := c.without("password")
	if out.u != nil && out.u.User != nil {
		out.u.User = url.User(out.u.User.Username())
	}
	return out
}

// withDatabase returns a copy pointed at database name.
func (c *connString) withDatabase(name string) *connString {
	out := c.without("dbname")
	if out.u != nil {
		out.u.Path = "/" + name
		out.u.RawPath = "/" + url.PathEscape(name)
		return out
	}
	out.kv = append(out.kv, kvPair{key: "dbname", value: name})
	return out
}

// database returns the database named in the string, or "".
func (c *connString) database() string {
	if c.u != nil {
		if d := c.u.Query().Get("dbname"); d != "" {
			return d
		}
		return strings.TrimPrefix(c.u.Path, "/")
	}
	var d string
	for _, kv := range c.kv {
		if kv.key == "dbname" {
			d = kv.value
		}
	}
	return d
}

// String returns the connection string (with its password, if it has one).
func (c *connString) String() string {
	if c.u != nil {
		return c.u.String()
	}
	parts := make([]string, len(c.kv))
	for i, kv := range c.kv {
		v := strings.ReplaceAll(kv.value, `\`, `\\`)
		v = strings.ReplaceAll(v, `'`, `\'`)
		parts[i] = kv.key + "='" + v + "'"
	}
	return strings.Join(parts, " ")
}

// Redacted returns the connection string with its password replaced by "xxxxx".
func (c *connString) Redacted() string {
	if c.password() == "" {
		return c.String()
	}
	out := c.clone()
	if out.u != nil {
		if _, ok := out.u.User.Password(); ok {
			out.u.User = url.UserPassword(out.u.User.Username(), redact.Mark)
		}
		q := out.u.Query()
		if q.Has("password") {
			q.Set("password", redact.Mark)
			out.u.RawQuery = q.Encode()
		}
		return out.u.String()
	}
	for i := range out.kv {
		if out.kv[i].key == "password" {
			out.kv[i].value = redact.Mark
		}
	}
	return out.String()
}

// Hosts returns the servers a connection with dsn may reach, as "host:port" (host may
// be a socket folder), in the order they are tried: the DSN's hosts, else the
// environment's (PGHOST, PGPORT) or its service's, as pgx reads them. A DSN naming
// several hosts (host=a,b) lets a connection land on the next one when the first does
// not answer: the server the production guard checked through one connection need not
// be the one pg_restore, or a later connection, reaches. Its errors never contain dsn.
func Hosts(dsn string) ([]string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("%w: pgx cannot read it", errBadDSN)
	}
	var hosts []string
	add := func(host string, port uint16) {
		h := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	add(cfg.Host, cfg.Port)
	for _, f := range cfg.Fallbacks {
		add(f.Host, f.Port)
	}
	return hosts, nil
}

// HasPassword reports whether dsn (a postgres:// URL or keyword/value pairs) carries a
// password itself (not one from PGPASSWORD or a password file). A program given such a
// DSN on its command line has shown it to every user of the machine (ps, /proc). Its
// errors never contain dsn.
func HasPassword(dsn string) (bool, error) {
	cs, err := parseConnString(dsn)
	if err != nil {
		return false, err
	}
	return cs.password() != "", nil
}
