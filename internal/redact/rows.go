package redact

import (
	"regexp"
	"strings"
)

// Withheld stands for the values of a row that PostgreSQL quoted in a message.
const Withheld = "[withheld]"

// PostgreSQL quotes a row's values in its errors: a unique or foreign key's values (Key
// (email)=(...) is duplicated), the whole row (Failing row contains (...)), a partition
// key, COPY's line or field, and the input a type rejected. pg_restore adds the statement
// (Command was: INSERT ... VALUES (...)) of a dump made with --inserts, and libpq the
// start of it (LINE 1: INSERT ...) when the error has a position. A report mailed to a
// list must not carry production's rows: the staging server's own log keeps the full text.
var (
	// key (cols)=( ; what follows is the key's value, up to one of keyEnds.
	keyStart = regexp.MustCompile(`(?i)\bkey \([^\n]*?\)=\(`)
	keyEnds  = []string{") is duplicated", ") already exists", ") is not present in table",
		") is still referenced from table", ") conflicts with existing key (", ") conflicts with key ("}

	// Patterns whose value runs to the end of the line.
	toEOL = []*regexp.Regexp{
		regexp.MustCompile(`(Failing row contains \().*`),
		regexp.MustCompile(`(Partition key of the failing row contains \([^\n]*?\) = \().*`),
		regexp.MustCompile(`(COPY [^\n]*?, line \d+(?:, column [^\n]*?)?: ).*`),
		regexp.MustCompile(`(JSON data, line \d+: ).*`),
		regexp.MustCompile(`(Command was: INSERT INTO [^\n]*? VALUES ).*`),
		// libpq's excerpt of a statement with an error position (an INSERT's values).
		regexp.MustCompile(`^(LINE \d+: ).*`),
	}
	// Patterns whose value is quoted; the quotes go with it.
	quoted = []*regexp.Regexp{
		regexp.MustCompile(`((?:invalid input syntax for type [^\n:"]+|invalid input value for enum [^\n:"]+|` +
			`malformed [a-z]+ literal|date/time field value out of range|invalid value for [^\n:"]+): )"[^\n]*"`),
		regexp.MustCompile(`(\b(?:value|Token) )"[^\n]*?"( is out of range| is invalid)`),
	}
)

// Rows returns s with the values of every row PostgreSQL quotes in its messages replaced
// by Withheld, line by line. A value that holds a line break continues on lines Rows
// cannot tell from others; RowFilter, which reads a program's output line by line, can.
func Rows(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i], _ = rowLine(l)
	}
	return strings.Join(lines, "\n")
}

// rowLine withholds the values in one line; open reports a value that the line does not
// end (so the next lines may be its rest).
func rowLine(l string) (_ string, open bool) {
	for _, re := range toEOL {
		if loc := re.FindStringSubmatchIndex(l); loc != nil && !strings.HasPrefix(l[loc[3]:], Withheld) {
			end := ""
			if strings.HasSuffix(l[:loc[3]], "(") {
				end = ")"
			}
			closed := strings.HasSuffix(l, ")") || strings.HasSuffix(l, ").") ||
				strings.HasSuffix(l, ");") || strings.HasSuffix(l, `"`)
			open = open || !closed
			l = l[:loc[3]] + Withheld + end
		}
	}
	for _, re := range quoted {
		l = re.ReplaceAllString(l, "${1}"+Withheld+"${2}")
	}
	var b strings.Builder
	for {
		loc := keyStart.FindStringIndex(l)
		if loc == nil {
			break
		}
		b.WriteString(l[:loc[1]])
		l = l[loc[1]:]
		if strings.HasPrefix(l, Withheld+")") {
			continue
		}
		end := -1
		for _, e := range keyEnds {
			if i := strings.Index(l, e); i >= 0 && (end < 0 || i < end) {
				end = i
			}
		}
		b.WriteString(Withheld)
		if end < 0 {
			b.WriteString(")")
			l = ""
			open = true
			break
		}
		l = l[end:]
	}
	b.WriteString(l)
	return b.String(), open
}

// RowFilter withholds row values from a program's output, one line at a time: a line
// that continues a withheld value (one that held a line break) is dropped too. It also
// withholds the text of the server notices a program relays (pg_restore: WARNING:  ...):
// production's code raises them (a function a CHECK constraint calls while the rows
// load, a trigger), and RAISE prints whatever it is given, row values too, so only the
// program's prefix and the severity are kept; the notice's further lines (DETAIL,
// CONTEXT) are dropped up to the program's next message.
type RowFilter struct {
	open   bool
	notice bool
}

var (
	// notice is a server notice a program relays: its prefix and severity are kept.
	notice = regexp.MustCompile(`^([a-z_]+: (?:DEBUG|LOG|INFO|NOTICE|WARNING):  ).*`)
	// message starts a program's next message, which ends a relayed notice.
	message = regexp.MustCompile(`^[a-z_]+: `)
)

// field starts a new message line: a program's prefix (pg_restore: ...), a field of a
// server's message (ERROR:  , DETAIL:  ), or pg_restore's Command was: .
var field = regexp.MustCompile(`^(?:[a-z_]+: |[A-Z]+:  |Command was: |LINE \d+: )`)

// Line returns line with its row values withheld, and false when line is the rest of a
// value withheld on an earlier line (drop it).
func (f *RowFilter) Line(line string) (string, bool) {
	if m := notice.FindStringSubmatch(line); m != nil {
		f.open, f.notice = false, true
		return m[1] + Withheld, true
	}
	if f.notice {
		if !message.MatchString(line) {
			return "", false
		}
		f.notice = false
	}
	if f.open && !field.MatchString(line) {
		return "", false
	}
	out, open := rowLine(line)
	f.open = open
	return out, true
}

// Field returns one field of a server's message (its message, detail or context) on one
// line, its line breaks shown as " / ", with its row values withheld.
func Field(s string) string { return Rows(strings.ReplaceAll(s, "\n", " / ")) }
