package mask

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ParseSchema reads the columns of the tables created by pg_restore's plain SQL of a
// backup's pre-data section (`pg_restore --schema-only --section=pre-data -f -`), as
// pg_dump writes it: one column per line inside CREATE TABLE. A child table (INHERITS)
// gets its parents' columns too; a partition (ALTER TABLE ... ATTACH PARTITION) and a
// child have their parents in Parents. A foreign table's columns are Foreign: no dump
// holds their rows, which staging reads from the foreign server.
func ParseSchema(r io.Reader) ([]Column, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	p := &schemaParser{byTable: map[string][]Column{}, names: map[string][2]string{}, parents: map[string][]string{}}
	for sc.Scan() {
		line := sc.Text()
		// A quoted name (or a literal) with a line break goes on on the next lines: in the
		// statements read here, whose text is names and literals only.
		if p.table != nil || slices.ContainsFunc(continued, func(s string) bool { return strings.HasPrefix(line, s) }) {
			for unterminated(line) && sc.Scan() {
				line += "\n" + sc.Text()
			}
		}
		var err error
		if p.table == nil {
			err = p.statement(line)
		} else {
			err = p.column(line)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, c := range p.out {
		for _, parent := range p.parents[c.TableKey()] {
			if !slices.Contains(c.Parents, parent) {
				p.out[i].Parents = append(p.out[i].Parents, parent)
			}
		}
	}
	return p.out, nil
}

// continued are the starts of the statements whose names may hold line breaks.
var continued = []string{"CREATE TABLE ", "CREATE UNLOGGED TABLE ", "CREATE FOREIGN TABLE ", "INHERITS (", "ALTER TABLE ONLY "}

// schemaParser is ParseSchema's state between lines.
type schemaParser struct {
	out     []Column
	table   []string // the CREATE TABLE being read
	last    string   // the table just read, for its INHERITS line
	foreign bool     // the table being read is a foreign table
	byTable map[string][]Column
	names   map[string][2]string // "schema.table" → its two names
	parents map[string][]string  // "schema.table" → the tables it is a partition of
}

// statement reads a line outside CREATE TABLE: an ATTACH PARTITION, the INHERITS of the
// table just read, or the start of a CREATE TABLE.
func (p *schemaParser) statement(line string) error {
	if rest, ok := strings.CutPrefix(line, "ALTER TABLE ONLY "); ok && strings.Contains(line, " ATTACH PARTITION ") {
		parent, child, err := attached(rest)
		if err != nil {
			return fmt.Errorf("%w: ATTACH PARTITION: %.80q", ErrCopy, line)
		}
		p.parents[child] = append(p.parents[child], parent)
		return nil
	}
	if parents, ok := strings.CutPrefix(line, "INHERITS ("); ok && p.last != "" {
		return p.inherits(line, parents)
	}
	p.last = ""
	rest, ok := strings.CutPrefix(line, "CREATE TABLE ")
	if !ok {
		rest, ok = strings.CutPrefix(line, "CREATE UNLOGGED TABLE ")
	}
	p.foreign = false
	if !ok {
		rest, ok = strings.CutPrefix(line, "CREATE FOREIGN TABLE ")
		p.foreign = ok
	}
	if !ok || !strings.HasSuffix(rest, " (") {
		return nil
	}
	schema, after, ok1 := identifier(rest)
	if !ok1 || !strings.HasPrefix(after, ".") {
		return fmt.Errorf("%w: CREATE TABLE without schema: %.80q", ErrCopy, line)
	}
	name, after, ok2 := identifier(after[1:])
	if !ok2 || after != " (" {
		return fmt.Errorf("%w: CREATE TABLE: %.80q", ErrCopy, line)
	}
	p.table = []string{schema, name}
	key := schema + "." + name
	p.byTable[key] = nil
	p.names[key] = [2]string{schema, name}
	return nil
}

// inherits gives the table just read the columns of its parents it does not declare.
func (p *schemaParser) inherits(line, parents string) error {
	for _, parent := range strings.Split(strings.TrimSuffix(parents, ");"), ", ") {
		schema, after, ok1 := identifier(parent)
		name, _, ok2 := identifier(strings.TrimPrefix(after, "."))
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: INHERITS: %.80q", ErrCopy, line)
		}
		for _, c := range p.byTable[schema+"."+name] {
			if !slices.ContainsFunc(p.byTable[p.last], func(o Column) bool { return o.Name == c.Name }) {
				child := Column{Schema: p.names[p.last][0], Table: p.names[p.last][1], Name: c.Name, Parents: []string{schema + "." + name}, Foreign: p.foreign}
				p.byTable[p.last] = append(p.byTable[p.last], child)
				p.out = append(p.out, child)
			}
		}
	}
	return nil
}

// column reads a line inside CREATE TABLE: a column, a constraint, or its end.
func (p *schemaParser) column(line string) error {
	if strings.HasPrefix(line, ")") {
		p.last, p.table = p.table[0]+"."+p.table[1], nil
		return nil
	}
	col := strings.TrimPrefix(line, "    ")
	if len(col) == len(line) || strings.HasPrefix(col, "CONSTRAINT ") {
		return nil
	}
	name, _, ok := identifier(col)
	if !ok {
		return fmt.Errorf("%w: column of %s.%s: %.80q", ErrCopy, p.table[0], p.table[1], line)
	}
	c := Column{Schema: p.table[0], Table: p.table[1], Name: name, Foreign: p.foreign}
	key := p.table[0] + "." + p.table[1]
	p.byTable[key] = append(p.byTable[key], c)
	p.out = append(p.out, c)
	return nil
}

// attached reads "parent ATTACH PARTITION child FOR VALUES ..." (or "DEFAULT"), each
// table as schema.name, and returns both as "schema.table".
func attached(s string) (parent, child string, err error) {
	var names [2]string
	for i := range names {
		schema, after, ok1 := identifier(s)
		if !ok1 || !strings.HasPrefix(after, ".") {
			return "", "", ErrCopy
		}
		name, after, ok2 := identifier(after[1:])
		if !ok2 {
			return "", "", ErrCopy
		}
		names[i] = schema + "." + name
		if i == 0 {
			if s, ok1 = strings.CutPrefix(after, " ATTACH PARTITION "); !ok1 {
				return "", "", ErrCopy
			}
		}
	}
	return names[0], names[1], nil
}

// Starter returns a starter [mask] section for cols: one line per column that lacks a
// decision, with a suggested rule from its name, to review before use.
func (r *Rules) Starter(cols []Column) string {
	var b strings.Builder
	b.WriteString("[mask]\nkey_env = \"" + r.keyEnv + "\"   # the HMAC key's variable; set it in the nightly's environment\n")
	b.WriteString("[mask.columns]\n# suggested from each column's name: review every line (an ip or date column needs null,\n# keep or fixed:VALUE, a value of its type)\n")
	err := r.Check(cols)
	var ue *UnmaskedError
	if !asUnmasked(err, &ue) {
		b.WriteString("# every column has a decision\n")
		return b.String()
	}
	foreign := map[string]bool{}
	for _, c := range cols {
		foreign[c.Key()] = c.Foreign
	}
	for _, c := range ue.Columns {
		if foreign[c] {
			fmt.Fprintf(&b, "%q = \"keep\"   # a foreign table: staging reads its rows from the foreign server; keep, or drop the table\n", c)
			continue
		}
		fmt.Fprintf(&b, "%q = %q\n", c, suggest(c[strings.LastIndexByte(c, '.')+1:]))
	}
	return b.String()
}

func asUnmasked(err error, into **UnmaskedError) bool {
	for _, e := range unwrapAll(err) {
		if u, ok := e.(*UnmaskedError); ok {
			*into = u
			return true
		}
	}
	return false
}

func unwrapAll(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return slices.Concat([]error{err}, j.Unwrap())
	}
	return []error{err}
}

// suggest guesses a rule from a column's name.
func suggest(name string) string {
	n := strings.ToLower(name)
	word := func(ws ...string) bool {
		for w := range strings.FieldsFuncSeq(n, func(c rune) bool { return c == '_' || c == ' ' || c == '-' || c == '.' }) {
			if slices.Contains(ws, w) {
				return true
			}
		}
		return false
	}
	has := func(ps ...string) bool {
		return slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(n, p) })
	}
	switch {
	case has("mail"):
		return string(Email)
	case has("phone", "mobile") || word("tel", "fax"):
		return string(Phone)
	case has("password", "passwd", "token", "secret", "iban", "passport") || word("pwd", "ssn"):
		return string(Hash)
	case has("name"):
		return string(Name)
	case has("address", "street", "postcode") || word("zip"):
		return string(Text)
	case has("birth") || word("dob"):
		return string(Null)
	default:
		return string(Keep)
	}
}
