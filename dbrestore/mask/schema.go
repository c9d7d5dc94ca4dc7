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
	var (
		out     []Column
		table   []string // the CREATE TABLE being read
		last    string   // the table just read, for its INHERITS line
		foreign bool     // the table being read is a foreign table
		byTable = map[string][]Column{}
		names   = map[string][2]string{} // "schema.table" → its two names
		parents = map[string][]string{}  // "schema.table" → the tables it is a partition of
	)
	for sc.Scan() {
		line := sc.Text()
		// A quoted name (or a literal) with a line break goes on on the next lines: in the
		// statements read here, whose text is names and literals only.
		if table != nil || strings.HasPrefix(line, "CREATE TABLE ") || strings.HasPrefix(line, "CREATE UNLOGGED TABLE ") ||
			strings.HasPrefix(line, "CREATE FOREIGN TABLE ") ||
			strings.HasPrefix(line, "INHERITS (") || strings.HasPrefix(line, "ALTER TABLE ONLY ") {
			for unterminated(line) && sc.Scan() {
				line += "\n" + sc.Text()
			}
		}
		if table == nil {
			if rest, ok := strings.CutPrefix(line, "ALTER TABLE ONLY "); ok && strings.Contains(line, " ATTACH PARTITION ") {
				parent, child, err := attached(rest)
				if err != nil {
					return nil, fmt.Errorf("%w: ATTACH PARTITION: %.80q", ErrCopy, line)
				}
				parents[child] = append(parents[child], parent)
				continue
			}
			if parents, ok := strings.CutPrefix(line, "INHERITS ("); ok && last != "" {
				for _, p := range strings.Split(strings.TrimSuffix(parents, ");"), ", ") {
					schema, after, ok1 := identifier(p)
					name, _, ok2 := identifier(strings.TrimPrefix(after, "."))
					if !ok1 || !ok2 {
						return nil, fmt.Errorf("%w: INHERITS: %.80q", ErrCopy, line)
					}
					for _, c := range byTable[schema+"."+name] {
						if !slices.ContainsFunc(byTable[last], func(o Column) bool { return o.Name == c.Name }) {
							child := Column{Schema: names[last][0], Table: names[last][1], Name: c.Name, Parents: []string{schema + "." + name}, Foreign: foreign}
							byTable[last] = append(byTable[last], child)
							out = append(out, child)
						}
					}
				}
				continue
			}
			last = ""
			rest, ok := strings.CutPrefix(line, "CREATE TABLE ")
			if !ok {
				rest, ok = strings.CutPrefix(line, "CREATE UNLOGGED TABLE ")
			}
			foreign = false
			if !ok {
				rest, ok = strings.CutPrefix(line, "CREATE FOREIGN TABLE ")
				foreign = ok
			}
			if !ok || !strings.HasSuffix(rest, " (") {
				continue
			}
			schema, after, ok1 := identifier(rest)
			if !ok1 || !strings.HasPrefix(after, ".") {
				return nil, fmt.Errorf("%w: CREATE TABLE without schema: %.80q", ErrCopy, line)
			}
			name, after, ok2 := identifier(after[1:])
			if !ok2 || after != " (" {
				return nil, fmt.Errorf("%w: CREATE TABLE: %.80q", ErrCopy, line)
			}
			table = []string{schema, name}
			key := schema + "." + name
			byTable[key] = nil
			names[key] = [2]string{schema, name}
			continue
		}
		if strings.HasPrefix(line, ")") {
			last, table = table[0]+"."+table[1], nil
			continue
		}
		col := strings.TrimPrefix(line, "    ")
		if len(col) == len(line) || strings.HasPrefix(col, "CONSTRAINT ") {
			continue
		}
		name, _, ok := identifier(col)
		if !ok {
			return nil, fmt.Errorf("%w: column of %s.%s: %.80q", ErrCopy, table[0], table[1], line)
		}
		c := Column{Schema: table[0], Table: table[1], Name: name, Foreign: foreign}
		key := table[0] + "." + table[1]
		byTable[key] = append(byTable[key], c)
		out = append(out, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for i, c := range out {
		for _, p := range parents[c.TableKey()] {
			if !slices.Contains(c.Parents, p) {
				out[i].Parents = append(out[i].Parents, p)
			}
		}
	}
	return out, nil
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
