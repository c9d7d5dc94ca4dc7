package mask

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Config is the [mask] section of an environment's config: where the key comes from,
// which columns must have a decision, and the decisions. Its zero value masks nothing
// and checks only the default classification patterns.
type Config struct {
	// KeyEnv names the environment variable that holds the HMAC key of the rules hash,
	// email, name, phone, text and of sample; "": RESTAGE_MASK_KEY.
	KeyEnv string `toml:"key_env"`
	// Classify adds column-name patterns to DefaultPatterns: a column whose name matches
	// one must have a decision.
	Classify []string `toml:"classify"`
	// Strict lists tables ("schema.table") every column of which must have a decision.
	Strict []string `toml:"strict"`
	// Columns maps "schema.table.column" to its rule: keep, null, fixed:VALUE, hash,
	// email, name, phone or text.
	Columns map[string]string `toml:"columns"`
	// Tables maps "schema.table" to truncate (no rows) or sample:F (keep a fraction F of
	// the rows, 0 < F <= 1, chosen deterministically).
	Tables map[string]string `toml:"tables"`
}

// DefaultKeyEnv is the variable the key is read from when Config.KeyEnv is empty.
const DefaultKeyEnv = "RESTAGE_MASK_KEY"

// LargeObjects names a database's large objects in rules and results, as the table
// that holds their data: they belong to no table, so no column rule reaches them. A
// backup that holds any needs a decision, like a strict table's column:
// `"pg_catalog.pg_largeobject" = "truncate"` (each kept, empty) or
// `"pg_catalog.pg_largeobject.data" = "keep"`.
const LargeObjects = "pg_catalog.pg_largeobject"

// LargeObjectData is the column that stands for the large objects of a database or
// backup in Check (Columns and CatalogColumns add it when there are any).
func LargeObjectData() Column {
	return Column{Schema: "pg_catalog", Table: "pg_largeobject", Name: "data"}
}

// DefaultPatterns are the classification patterns every check uses: a column whose name
// contains one (case-insensitive) holds personal data until a rule says otherwise.
// Patterns of three letters or fewer ("ip", "tel", "dob") must be a whole word of the
// name, between separators or its ends, so that "description" is not an IP address nor
// "hotel" a telephone number.
var DefaultPatterns = []string{
	"email", "mail", "name", "phone", "mobile", "tel", "fax", "address", "street", "postcode", "zip",
	"ip", "password", "passwd", "pwd", "token", "secret", "birth", "dob", "ssn", "iban", "passport",
}

// Kind is what a rule does to a column's values.
type Kind string

// The column rules. NULL stays NULL under every rule.
const (
	Keep  Kind = "keep"  // the value as it is
	Null  Kind = "null"  // NULL
	Fixed Kind = "fixed" // one value for every row ("fixed:VALUE")
	Hash  Kind = "hash"  // hex of HMAC-SHA256(key, value), the value's length, 16 to 64 characters
	Email Kind = "email" // u<16 hex of the HMAC>@example.invalid: unique when the values are
	Name  Kind = "name"  // a fake name, as many words and of the same length class
	Phone Kind = "phone" // every digit replaced, the rest of the format kept
	Text  Kind = "text"  // fake words of the same length
)

// The table rules.
const (
	Truncate Kind = "truncate" // the table is kept without rows
	Sample   Kind = "sample"   // a deterministic fraction of the rows ("sample:0.05")
)

// Errors callers test with errors.Is.
var (
	// ErrRule is a bad rule: an unknown kind, a malformed name, a rule for a column or
	// table the backup does not hold. It is a config error.
	ErrRule = errors.New("bad masking rule")
	// ErrUnmasked is a column that must have a decision and has none (*UnmaskedError).
	ErrUnmasked = errors.New("personal data without a masking decision")
	// ErrNoKey is a rule that needs the key while its variable is unset or empty.
	ErrNoKey = errors.New("masking key not set")
)

// UnmaskedError lists every column that must have a decision and has none.
type UnmaskedError struct {
	Columns []string // "schema.table.column", sorted
}

// Error names every column.
func (e *UnmaskedError) Error() string {
	return fmt.Sprintf("%v: %d column(s) need a rule in [mask.columns] (or their table in [mask.tables]): %s",
		ErrUnmasked, len(e.Columns), strings.Join(e.Columns, ", "))
}

// Unwrap returns ErrUnmasked.
func (e *UnmaskedError) Unwrap() error { return ErrUnmasked }

// Rule is one column's decision.
type Rule struct {
	Kind  Kind
	Value string // the value of fixed
}

// String is the rule as written in the config.
func (r Rule) String() string {
	if r.Kind == Fixed {
		return "fixed:" + r.Value
	}
	return string(r.Kind)
}

// TableRule is one table's decision.
type TableRule struct {
	Kind     Kind
	Fraction float64 // of sample
}

// String is the rule as written in the config.
func (r TableRule) String() string {
	if r.Kind == Sample {
		return "sample:" + strconv.FormatFloat(r.Fraction, 'g', -1, 64)
	}
	return string(r.Kind)
}

// ParseRule parses a column rule.
func ParseRule(s string) (Rule, error) {
	if v, ok := strings.CutPrefix(s, "fixed:"); ok {
		return Rule{Kind: Fixed, Value: v}, nil
	}
	switch k := Kind(s); k {
	case Keep, Null, Hash, Email, Name, Phone, Text:
		return Rule{Kind: k}, nil
	}
	return Rule{}, fmt.Errorf("%q: want keep, null, fixed:VALUE, hash, email, name, phone or text", s)
}

// ParseTableRule parses a table rule.
func ParseTableRule(s string) (TableRule, error) {
	if s == string(Truncate) {
		return TableRule{Kind: Truncate}, nil
	}
	if v, ok := strings.CutPrefix(s, "sample:"); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err == nil && f > 0 && f <= 1 {
			return TableRule{Kind: Sample, Fraction: f}, nil
		}
	}
	return TableRule{}, fmt.Errorf("%q: want truncate or sample:F with 0 < F <= 1", s)
}

// splitName splits "a.b.c" into n non-empty parts.
func splitName(s string, n int) ([]string, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != n {
		return nil, false
	}
	for _, p := range parts {
		if p == "" || strings.TrimSpace(p) != p {
			return nil, false
		}
	}
	return parts, true
}

// Validate checks c without reading the key: every problem at once, each naming its
// key (mask.columns."public.person.email", mask.tables."public.session", ...), in an
// error wrapping ErrRule.
func (c *Config) Validate() error {
	var p []string
	for _, k := range slices.Sorted(maps.Keys(c.Columns)) {
		if _, ok := splitName(k, 3); !ok {
			p = append(p, fmt.Sprintf("mask.columns.%q: want \"schema.table.column\"", k))
		}
		if _, err := ParseRule(c.Columns[k]); err != nil {
			p = append(p, fmt.Sprintf("mask.columns.%q: %v", k, err))
		} else if strings.HasPrefix(k, LargeObjects+".") && (k != LargeObjects+".data" || c.Columns[k] != string(Keep)) {
			p = append(p, fmt.Sprintf("mask.columns.%q: large objects are kept (%q = \"keep\") or emptied (mask.tables.%q = \"truncate\")",
				k, LargeObjects+".data", LargeObjects))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Tables)) {
		if _, ok := splitName(k, 2); !ok {
			p = append(p, fmt.Sprintf("mask.tables.%q: want \"schema.table\"", k))
		}
		if _, err := ParseTableRule(c.Tables[k]); err != nil {
			p = append(p, fmt.Sprintf("mask.tables.%q: %v", k, err))
		} else if k == LargeObjects && c.Tables[k] != string(Truncate) {
			p = append(p, fmt.Sprintf("mask.tables.%q: large objects are emptied (truncate) or kept, not sampled", k))
		}
	}
	for i, s := range c.Strict {
		if _, ok := splitName(s, 2); !ok {
			p = append(p, fmt.Sprintf("mask.strict[%d] %q: want \"schema.table\"", i, s))
		}
	}
	for i, s := range c.Classify {
		if strings.TrimSpace(s) == "" {
			p = append(p, fmt.Sprintf("mask.classify[%d]: empty pattern", i))
		}
	}
	if c.KeyEnv != "" && (strings.ContainsAny(c.KeyEnv, "= \x00") || c.KeyEnv != strings.TrimSpace(c.KeyEnv)) {
		p = append(p, fmt.Sprintf("mask.key_env %q: want the name of an environment variable", c.KeyEnv))
	}
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRule, strings.Join(p, "; "))
}

// Enabled reports whether c has any rule: only then does a restore stream tables
// through the masker. The check for unmasked columns runs either way.
func (c *Config) Enabled() bool { return len(c.Columns) > 0 || len(c.Tables) > 0 }

// needsKey reports whether a rule needs the HMAC key.
func (c *Config) needsKey() bool {
	for _, v := range c.Columns {
		if r, err := ParseRule(v); err == nil && r.Kind != Keep && r.Kind != Null && r.Kind != Fixed {
			return true
		}
	}
	for _, v := range c.Tables {
		if r, err := ParseTableRule(v); err == nil && r.Kind == Sample {
			return true
		}
	}
	return false
}

// Rules are a validated Config with its key: what a restore or Apply masks. Make them
// with New. The key never leaves them: String and LogValue do not show it.
type Rules struct {
	columns  map[string]map[string]Rule // "schema.table" → column → rule
	tables   map[string]TableRule       // "schema.table" → rule
	strict   map[string]bool
	patterns []string
	keyEnv   string
	key      []byte
}

// New validates c and reads the key from the variable c.KeyEnv names through getenv
// (os.Getenv in programs). A rule that needs the key while it is unset is ErrNoKey,
// naming mask.key_env and the variable; the error never holds the key.
func New(c Config, getenv func(string) string) (*Rules, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	r := &Rules{columns: map[string]map[string]Rule{}, tables: map[string]TableRule{}, strict: map[string]bool{},
		keyEnv: c.KeyEnv}
	if r.keyEnv == "" {
		r.keyEnv = DefaultKeyEnv
	}
	for k, v := range c.Columns {
		parts, _ := splitName(k, 3)
		rule, _ := ParseRule(v)
		t := parts[0] + "." + parts[1]
		if r.columns[t] == nil {
			r.columns[t] = map[string]Rule{}
		}
		r.columns[t][parts[2]] = rule
	}
	for k, v := range c.Tables {
		r.tables[k], _ = ParseTableRule(v)
	}
	for _, s := range c.Strict {
		r.strict[s] = true
	}
	for _, p := range slices.Concat(DefaultPatterns, c.Classify) {
		p = strings.ToLower(strings.TrimSpace(p))
		if !slices.Contains(r.patterns, p) {
			r.patterns = append(r.patterns, p)
		}
	}
	if key := getenv(r.keyEnv); key != "" {
		r.key = []byte(key)
	} else if c.needsKey() {
		return nil, fmt.Errorf("%w: mask.key_env: the variable %s is unset or empty, and hash, email, name, phone, text and sample rules need it",
			ErrNoKey, r.keyEnv)
	}
	return r, nil
}

// String describes the rules without the key.
func (r *Rules) String() string {
	n := 0
	for _, cols := range r.columns {
		n += len(cols)
	}
	return fmt.Sprintf("mask.Rules{%d column rules, %d table rules, key from $%s}", n, len(r.tables), r.keyEnv)
}

// Secret returns the key, for callers that must keep it out of what they print
// (internal/redact). It is empty for nil Rules, and when no rule needed a key and none
// was set.
func (r *Rules) Secret() string {
	if r == nil {
		return ""
	}
	return string(r.key)
}

// Column is a column of a table, as the check and the maskers see it.
type Column struct {
	Schema, Table, Name string
	Array               bool // an array type: value rules apply to each element
	// Foreign is a foreign table's column: its rows are on another server (production's,
	// often), read from staging through the foreign server and its user mapping, and no
	// backup holds them, so no rule masks them: a column that needs a decision takes
	// keep, or the foreign table goes.
	Foreign bool
	// Parents are the tables ("schema.table") this one inherits from or is a partition
	// of: a column masked there must be decided here too, since its rows are this table's.
	Parents []string
}

// Key is "schema.table.column".
func (c Column) Key() string { return c.Schema + "." + c.Table + "." + c.Name }

// TableKey is "schema.table".
func (c Column) TableKey() string { return c.Schema + "." + c.Table }

// Classified reports whether a column called name matches a classification pattern. A
// pattern longer than three letters matches the name with its separators (_ - . and
// spaces) left out too, so that "E-Mail" and "e_mail" are e-mail columns.
func (r *Rules) Classified(name string) bool {
	lower := strings.ToLower(name)
	sep := func(c rune) bool { return c == '_' || c == ' ' || c == '-' || c == '.' }
	joined := strings.Join(strings.FieldsFunc(lower, sep), "")
	for _, p := range r.patterns {
		if len(p) > 3 {
			if strings.Contains(lower, p) || strings.Contains(joined, p) {
				return true
			}
			continue
		}
		for w := range strings.FieldsFuncSeq(lower, sep) {
			if w == p {
				return true
			}
		}
	}
	return false
}

// Check returns every column of cols (a whole database's, or a backup's) that must have
// a decision and has none: its name matches a pattern, its table is strict or a child
// (inheritance, partition) of a strict table or of a table with a table rule, or the
// column is masked in the table's parent; a column of a truncated table needs none. It also returns rules that name a column or table
// cols does not hold, as an error wrapping ErrRule (a rule that masks nothing is a
// mistake, e.g. a renamed column). Unmasked columns are an *UnmaskedError.
func (r *Rules) Check(cols []Column) error {
	have := map[string]bool{}
	tables := map[string]bool{}
	parents := map[string][]string{}
	var bad []string
	for _, c := range cols {
		if !c.Foreign {
			continue
		}
		if rule, ok := r.columns[c.TableKey()][c.Name]; ok && rule.Kind != Keep {
			bad = append(bad, fmt.Sprintf("mask.columns.%q: a foreign table's rows are on its server, not in the backup, and no rule masks them (keep, or drop the foreign table)", c.Key()))
		}
		if _, ok := r.tables[c.TableKey()]; ok && !slices.Contains(bad, "mask.tables."+strconv.Quote(c.TableKey())+foreignTable) {
			bad = append(bad, "mask.tables."+strconv.Quote(c.TableKey())+foreignTable)
		}
	}
	for _, c := range cols {
		for _, p := range c.Parents {
			if !slices.Contains(parents[c.TableKey()], p) {
				parents[c.TableKey()] = append(parents[c.TableKey()], p)
			}
		}
	}
	var unmasked []string
	for _, c := range cols {
		have[c.Key()] = true
		tables[c.TableKey()] = true
		if _, ok := r.tables[c.TableKey()]; ok && r.tables[c.TableKey()].Kind == Truncate && !c.Foreign {
			continue
		}
		if _, ok := r.columns[c.TableKey()][c.Name]; ok {
			continue
		}
		if r.strictTable(c.TableKey(), parents, nil) || r.Classified(c.Name) || r.maskedIn(c.Parents, c.Name) {
			unmasked = append(unmasked, c.Key())
		}
	}
	for t, rules := range r.columns {
		for col := range rules {
			if !have[t+"."+col] && t != LargeObjects { // a backup may hold none
				bad = append(bad, fmt.Sprintf("mask.columns.%q: the backup has no such column", t+"."+col))
			}
		}
	}
	for t := range r.tables {
		if !tables[t] && t != LargeObjects {
			bad = append(bad, fmt.Sprintf("mask.tables.%q: the backup has no such table", t))
		}
	}
	for t := range r.strict {
		if !tables[t] {
			bad = append(bad, fmt.Sprintf("mask.strict %q: the backup has no such table", t))
		}
	}
	slices.Sort(bad)
	var errs []error
	if len(bad) > 0 {
		errs = append(errs, fmt.Errorf("%w: %s", ErrRule, strings.Join(bad, "; ")))
	}
	if len(unmasked) > 0 {
		slices.Sort(unmasked)
		errs = append(errs, &UnmaskedError{Columns: slices.Compact(unmasked)})
	}
	return errors.Join(errs...)
}

// foreignTable ends the problem of a table rule for a foreign table.
const foreignTable = ": a foreign table's rows are on its server, not in the backup, and no table rule reaches them (decide keep for its columns, or drop the foreign table)"

// strictTable reports whether every column of table needs a decision: it is listed in
// strict, or it inherits from or is a partition of (directly or not) a strict table or a
// table with a table rule. Its rows are the parent's rows too (SELECT on the parent
// reads them), and neither strict nor a truncate or sample of the parent reaches them:
// the data of each child loads (or is masked in place) on its own.
func (r *Rules) strictTable(table string, parents map[string][]string, seen []string) bool {
	if r.strict[table] || table == LargeObjects {
		return true
	}
	for _, p := range parents[table] {
		if slices.Contains(seen, p) {
			continue
		}
		if _, ok := r.tables[p]; ok || r.strictTable(p, parents, append(seen, table)) {
			return true
		}
	}
	return false
}

// maskedIn reports whether a rule other than keep masks column in one of tables.
func (r *Rules) maskedIn(tables []string, column string) bool {
	for _, t := range tables {
		if rule, ok := r.columns[t][column]; ok && rule.Kind != Keep {
			return true
		}
	}
	return false
}

// Table returns the rules of table ("schema.table"): its column rules other than keep
// and its table rule; ok is false when the table's rows pass as they are.
func (r *Rules) Table(table string) (cols map[string]Rule, tr TableRule, ok bool) {
	cols = map[string]Rule{}
	for c, rule := range r.columns[table] {
		if rule.Kind != Keep {
			cols[c] = rule
		}
	}
	tr, hasTable := r.tables[table]
	return cols, tr, len(cols) > 0 || hasTable
}

// Personal returns the columns of cols (schema.table.column, sorted) that hold personal
// data by their name alone (a classification pattern) or are large objects: what needs a
// decision in a database that no column or table rule is written for.
func (r *Rules) Personal(cols []Column) []string {
	var out []string
	for _, c := range cols {
		if c.TableKey() == LargeObjects || r.Classified(c.Name) {
			out = append(out, c.Key())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// EmptyLargeObjects reports whether the rules empty the large objects (a truncate of
// LargeObjects): each is kept, so that references to it hold, with no data.
func (r *Rules) EmptyLargeObjects() bool {
	_, ok := r.tables[LargeObjects]
	return ok
}

// Tables returns the tables whose rows the rules change, sorted (LargeObjects, which
// no table holds, is not one: see EmptyLargeObjects).
func (r *Rules) Tables() []string {
	var out []string
	for t := range r.columns {
		if _, _, ok := r.Table(t); ok {
			out = append(out, t)
		}
	}
	for t := range r.tables {
		if !slices.Contains(out, t) && t != LargeObjects {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}
