package mask

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// ErrCopy is COPY data the masker cannot read: a bad header, a malformed array, a row
// with fewer columns than its header. The restore fails rather than pass it unmasked.
var ErrCopy = errors.New("unreadable COPY data")

// nullField is COPY text's NULL.
var nullField = []byte(`\N`)

// DecodeField appends the value of one field of COPY's text format (not \N) to dst,
// undoing its backslash escapes: \b \f \n \r \t \v, octal \ooo, hex \xhh, and a
// backslash before any other character stands for that character.
func DecodeField(dst, f []byte) []byte {
	if bytes.IndexByte(f, '\\') < 0 {
		return append(dst, f...)
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c != '\\' || i+1 == len(f) {
			dst = append(dst, c)
			continue
		}
		i++
		switch c = f[i]; c {
		case 'x':
			v, n := 0, 0
			for n < 2 && i+1 < len(f) && isHex(f[i+1]) {
				i++
				v = v<<4 | hexVal(f[i])
				n++
			}
			if n == 0 {
				dst = append(dst, 'x')
			} else {
				dst = append(dst, byte(v))
			}
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(f) && f[i+1] >= '0' && f[i+1] <= '7'; n++ {
				i++
				v = v<<3 | int(f[i]-'0')
			}
			dst = append(dst, byte(v))
		default:
			if u := copyUnescapes[c]; u != 0 {
				c = u
			}
			dst = append(dst, c)
		}
	}
	return dst
}

// copyUnescapes maps the letter after a backslash in COPY's text format to the byte it
// stands for; zero means the letter stands for itself.
var copyUnescapes = [256]byte{'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(c byte) int {
	switch {
	case c <= '9':
		return int(c - '0')
	case c >= 'a':
		return int(c-'a') + 10
	default:
		return int(c-'A') + 10
	}
}

// copyEscapes maps each byte COPY's text format writes escaped to the letter after its
// backslash; zero means the byte stands as it is.
var copyEscapes = [256]byte{'\\': '\\', '\b': 'b', '\f': 'f', '\n': 'n', '\r': 'r', '\t': 't', '\v': 'v'}

// EncodeField appends v as one field of COPY's text format: backslash, tab, newline,
// carriage return and the other control characters COPY escapes are escaped, so a
// value never ends its field or its row.
func EncodeField(dst, v []byte) []byte {
	clean := true
	for _, c := range v {
		if c < 0x20 || c == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return append(dst, v...)
	}
	for _, c := range v {
		if e := copyEscapes[c]; e != 0 {
			dst = append(dst, '\\', e)
		} else {
			dst = append(dst, c)
		}
	}
	return dst
}

// Header is the COPY statement that starts a table's data in pg_restore's output.
type Header struct {
	Table   string   // "schema.table", unquoted
	Columns []string // unquoted, in the data's order
	// Statement is "COPY <table> (<columns>) FROM STDIN" with the dump's quoting.
	Statement string
}

// ParseHeader parses `COPY schema.table (col, "Col 2") FROM stdin;` as pg_dump writes it.
func ParseHeader(line string) (Header, error) {
	line = strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(line, "COPY ")
	if !ok || !strings.HasSuffix(rest, " FROM stdin;") {
		return Header{}, fmt.Errorf("%w: not a COPY header: %.80q", ErrCopy, line)
	}
	rest = strings.TrimSuffix(rest, " FROM stdin;")
	schema, rest, ok1 := identifier(rest)
	if !ok1 || !strings.HasPrefix(rest, ".") {
		return Header{}, fmt.Errorf("%w: COPY header without schema.table: %.80q", ErrCopy, line)
	}
	table, rest, ok2 := identifier(rest[1:])
	if !ok2 {
		return Header{}, fmt.Errorf("%w: COPY header: bad table name: %.80q", ErrCopy, line)
	}
	h := Header{Table: schema + "." + table}
	if rest != "" {
		if !strings.HasPrefix(rest, " (") || !strings.HasSuffix(rest, ")") {
			return Header{}, fmt.Errorf("%w: COPY header: bad column list: %.80q", ErrCopy, line)
		}
		list := rest[2 : len(rest)-1]
		for list != "" {
			col, r, ok := identifier(list)
			if !ok {
				return Header{}, fmt.Errorf("%w: COPY header: bad column name: %.80q", ErrCopy, line)
			}
			h.Columns = append(h.Columns, col)
			list = strings.TrimPrefix(r, ", ")
			if len(list) == len(r) && r != "" {
				return Header{}, fmt.Errorf("%w: COPY header: bad column list: %.80q", ErrCopy, line)
			}
		}
	}
	h.Statement = strings.TrimSuffix(line, " FROM stdin;") + " FROM STDIN"
	return h, nil
}

// unterminated reports whether s, a statement's text up to a line break, ends inside a
// quoted identifier ("...") or a string literal ('...', as pg_dump writes them, quotes
// doubled): a name or value with a line break, whose statement goes on on the next line.
func unterminated(s string) bool {
	var in byte
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case in == 0 && (c == '"' || c == '\''):
			in = c
		case c == in:
			in = 0 // a doubled quote opens again at once
		}
	}
	return in != 0
}

// identifier reads one SQL identifier, quoted ("a ""b""") or bare, from the start of s.
func identifier(s string) (name, rest string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			if s[i] != '"' {
				b.WriteByte(s[i])
				continue
			}
			if i+1 < len(s) && s[i+1] == '"' {
				b.WriteByte('"')
				i++
				continue
			}
			return b.String(), s[i+1:], b.Len() > 0
		}
		return "", s, false
	}
	i := strings.IndexFunc(s, func(r rune) bool { return r == '.' || r == ',' || r == ' ' || r == '(' || r == ')' })
	if i < 0 {
		i = len(s)
	}
	return s[:i], s[i:], i > 0
}

// TableMasker masks the rows of one table's COPY data. Make it with Rules.Masker; it is
// not safe for concurrent use.
type TableMasker struct {
	m      *masker
	rules  []Rule // by column index; Kind "" passes
	arrays []bool
	ncols  int
	sample float64 // 0: every row
	none   bool    // truncate: no row
	buf    []byte  // a decoded value
	out    []byte  // its masked value
	// RowsIn and RowsOut count the rows read and written.
	RowsIn, RowsOut int64
	// Changed counts, per column index, the values a rule changed (not NULLs).
	Changed []int64
}

// Masker returns the masker of table's data whose columns come in the order of columns;
// cols, when given, says which are arrays (their elements are masked one by one).
func (r *Rules) Masker(table string, columns []string, cols []Column) (*TableMasker, error) {
	rules, tr, _ := r.Table(table)
	tm := &TableMasker{m: newMasker(r.key), rules: make([]Rule, len(columns)), arrays: make([]bool, len(columns)),
		ncols: len(columns), Changed: make([]int64, len(columns))}
	seen := 0
	for i, c := range columns {
		if rule, ok := rules[c]; ok {
			tm.rules[i] = rule
			seen++
		}
		for _, col := range cols {
			if col.Name == c && col.Array {
				tm.arrays[i] = true
			}
		}
	}
	if seen != len(rules) {
		for c := range rules {
			if !containsString(columns, c) {
				return nil, fmt.Errorf("%w: mask.columns.%q: the data of %s has no such column", ErrRule, table+"."+c, table)
			}
		}
	}
	switch tr.Kind {
	case Truncate:
		tm.none = true
	case Sample:
		tm.sample = tr.Fraction
	}
	return tm, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Row appends the masked row of line (one row of COPY text, without its newline) and a
// newline to dst; keep is false when the table rule drops the row.
func (tm *TableMasker) Row(dst, line []byte) (out []byte, keep bool, err error) {
	tm.RowsIn++
	if tm.none || (tm.sample > 0 && !tm.m.keepRow(line, tm.sample)) {
		return dst, false, nil
	}
	start := len(dst)
	col := 0
	for {
		end := bytes.IndexByte(line, '\t')
		last := end < 0
		if last {
			end = len(line)
		}
		f := line[:end]
		if col >= tm.ncols {
			return dst[:start], false, fmt.Errorf("%w: a row has more than %d columns", ErrCopy, tm.ncols)
		}
		if col > 0 {
			dst = append(dst, '\t')
		}
		rule := tm.rules[col]
		if rule.Kind == "" || rule.Kind == Keep || bytes.Equal(f, nullField) {
			dst = append(dst, f...)
		} else {
			if dst, err = tm.field(dst, col, rule, f); err != nil {
				return dst[:start], false, err
			}
			tm.Changed[col]++
		}
		col++
		if last {
			break
		}
		line = line[end+1:]
	}
	if col != tm.ncols {
		return dst[:start], false, fmt.Errorf("%w: a row has %d columns, its header %d", ErrCopy, col, tm.ncols)
	}
	tm.RowsOut++
	return append(dst, '\n'), true, nil
}

// field masks one non-NULL field f (escaped) of column col, appending it escaped.
func (tm *TableMasker) field(dst []byte, col int, rule Rule, f []byte) ([]byte, error) {
	tm.buf = DecodeField(tm.buf[:0], f)
	var null bool
	var err error
	if tm.arrays[col] && rule.Kind != Null && rule.Kind != Fixed {
		if tm.out, err = tm.m.array(tm.out[:0], rule, tm.buf); err != nil {
			return dst, err
		}
	} else {
		tm.out, null = tm.m.value(tm.out[:0], rule, tm.buf)
	}
	if null {
		return append(dst, nullField...), nil
	}
	return EncodeField(dst, tm.out), nil
}

// array masks each element of an array literal ({a,"b c",NULL,{d}}) with rule, keeping
// NULL elements and the dimensions.
func (m *masker) array(dst []byte, rule Rule, v []byte) ([]byte, error) {
	i := 0
	if len(v) > 0 && v[0] == '[' { // explicit bounds: [1:2]={...}
		j := bytes.IndexByte(v, '=')
		if j < 0 {
			return dst, fmt.Errorf("%w: bad array bounds", ErrCopy)
		}
		dst = append(dst, v[:j+1]...)
		i = j + 1
	}
	dst, i, err := m.arrayLevel(dst, rule, v, i)
	if err != nil {
		return dst, err
	}
	if i != len(v) {
		return dst, fmt.Errorf("%w: text after an array", ErrCopy)
	}
	return dst, nil
}

// arrayLevel masks the brace-enclosed level starting at v[i], returning where it ends.
func (m *masker) arrayLevel(dst []byte, rule Rule, v []byte, i int) ([]byte, int, error) {
	if i >= len(v) || v[i] != '{' {
		return dst, i, fmt.Errorf("%w: want an array", ErrCopy)
	}
	dst = append(dst, '{')
	i++
	var elem []byte
	for first := true; ; first = false {
		for i < len(v) && v[i] == ' ' {
			i++
		}
		if i < len(v) && v[i] == '}' && first {
			return append(dst, '}'), i + 1, nil
		}
		if !first {
			dst = append(dst, ',')
		}
		if i >= len(v) {
			return dst, i, fmt.Errorf("%w: unterminated array", ErrCopy)
		}
		switch {
		case v[i] == '{':
			var err error
			if dst, i, err = m.arrayLevel(dst, rule, v, i); err != nil {
				return dst, i, err
			}
		case v[i] == '"':
			elem = elem[:0]
			i++
			for ; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				elem = append(elem, v[i])
			}
			if i >= len(v) {
				return dst, i, fmt.Errorf("%w: unterminated quoted array element", ErrCopy)
			}
			i++
			dst = m.element(dst, rule, elem)
		default:
			elem = elem[:0]
			for ; i < len(v) && v[i] != ',' && v[i] != '}'; i++ {
				if v[i] == '\\' && i+1 < len(v) {
					i++
				}
				elem = append(elem, v[i])
			}
			elem = bytes.TrimRight(elem, " ")
			if bytes.EqualFold(elem, []byte("NULL")) {
				dst = append(dst, "NULL"...)
			} else {
				dst = m.element(dst, rule, elem)
			}
		}
		for i < len(v) && v[i] == ' ' {
			i++
		}
		if i >= len(v) {
			return dst, i, fmt.Errorf("%w: unterminated array", ErrCopy)
		}
		if v[i] == '}' {
			return append(dst, '}'), i + 1, nil
		}
		if v[i] != ',' {
			return dst, i, fmt.Errorf("%w: bad array delimiter %q", ErrCopy, v[i])
		}
		i++
	}
}

// element appends the masked element e, quoted.
func (m *masker) element(dst []byte, rule Rule, e []byte) []byte {
	masked, _ := m.value(nil, rule, e)
	dst = append(dst, '"')
	for _, c := range masked {
		if c == '"' || c == '\\' {
			dst = append(dst, '\\')
		}
		dst = append(dst, c)
	}
	return append(dst, '"')
}

// Stream reads pg_restore's plain output of one table's data (`pg_restore --data-only
// -f -`: settings, the COPY header, the rows, `\.`) and yields the masked rows as COPY
// text, for COPY ... FROM STDIN. Memory is bounded by the longest row.
type Stream struct {
	br     *bufio.Reader
	tm     *TableMasker
	rules  *Rules
	cols   []Column
	header Header
	out    []byte
	off    int
	line   []byte
	done   bool
	err    error // what ended the data, when not its end marker

	// The masking runs ahead in its own goroutine, one batch at a time, while COPY
	// sends the batch before.
	batches chan batch
	free    chan []byte
	stop    chan struct{}
	wg      sync.WaitGroup
	// Encoding is the client_encoding the output set before its COPY ("" when none).
	Encoding string
	// Table, when set, is the table ("schema.table") whose rules mask the data, whatever
	// table its COPY header names: with pg_dump --load-via-partition-root a partition's
	// data is a COPY into the partitioned table at its root, and the partition's rules
	// (not the root's) must mask it.
	Table string
}

// streamBatch is how much masked data a Stream prepares at once.
const streamBatch = 64 << 10

// NewStream reads pg_restore's output from src; cols, when given, are the table's
// columns (to know its arrays).
func (r *Rules) NewStream(src io.Reader, cols []Column) *Stream {
	return &Stream{br: bufio.NewReaderSize(src, 256<<10), rules: r, cols: cols}
}

// Header reads up to the COPY header and returns it, with the masker of its table.
func (s *Stream) Header() (Header, *TableMasker, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF {
				return Header{}, nil, fmt.Errorf("%w: no COPY in pg_restore's output", ErrCopy)
			}
			return Header{}, nil, err
		}
		l := string(line)
		if enc, ok := strings.CutPrefix(l, "SET client_encoding = '"); ok {
			s.Encoding = strings.TrimSuffix(enc, "';")
			continue
		}
		if !strings.HasPrefix(l, "COPY ") {
			continue
		}
		for unterminated(l) { // a quoted name with a line break
			more, err := s.readLine()
			if err != nil {
				return Header{}, nil, fmt.Errorf("%w: COPY header ends inside a quoted name", ErrCopy)
			}
			l += "\n" + string(more)
		}
		if s.header, err = ParseHeader(l); err != nil {
			return Header{}, nil, err
		}
		table := s.header.Table
		if s.Table != "" {
			table = s.Table
		}
		if s.tm, err = s.rules.Masker(table, s.header.Columns, s.cols); err != nil {
			return Header{}, nil, err
		}
		return s.header, s.tm, nil
	}
}

// readLine returns the next line without its newline; the slice is valid until the
// next call.
func (s *Stream) readLine() ([]byte, error) {
	s.line = s.line[:0]
	for {
		chunk, err := s.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			s.line = append(s.line, chunk...)
			continue
		}
		if err != nil && (err != io.EOF || len(chunk) == 0 && len(s.line) == 0) {
			return nil, err
		}
		if len(s.line) == 0 {
			return bytes.TrimSuffix(chunk, []byte("\n")), nil
		}
		s.line = append(s.line, chunk...)
		return bytes.TrimSuffix(s.line, []byte("\n")), nil
	}
}

// batch is masked rows prepared ahead, or what ended them.
type batch struct {
	data []byte
	last bool
	err  error
}

// fill appends masked rows to buf until it holds streamBatch bytes or the data ends.
func (s *Stream) fill(buf []byte) (out []byte, last bool, err error) {
	for len(buf) < streamBatch {
		line, err := s.readLine()
		if err == io.EOF {
			return buf, true, fmt.Errorf("%w: the data of %s ends without its end marker (\\.)", ErrCopy, s.header.Table)
		}
		if err != nil {
			return buf, true, err
		}
		if len(line) == 2 && line[0] == '\\' && line[1] == '.' {
			return buf, true, nil
		}
		if buf, _, err = s.tm.Row(buf, line); err != nil {
			return buf, true, fmt.Errorf("%s row %d: %w", s.header.Table, s.tm.RowsIn, err)
		}
	}
	return buf, false, nil
}

// start starts masking ahead.
func (s *Stream) start() {
	s.batches, s.free, s.stop = make(chan batch, 2), make(chan []byte, 4), make(chan struct{})
	s.wg.Go(func() {
		for {
			var buf []byte
			select {
			case buf = <-s.free:
			default:
				buf = make([]byte, 0, streamBatch+8<<10)
			}
			data, last, err := s.fill(buf)
			select {
			case s.batches <- batch{data: data, last: last, err: err}:
			case <-s.stop:
				return
			}
			if last {
				return
			}
		}
	})
}

// Read yields masked rows until the end of the COPY data (`\.`), then io.EOF.
func (s *Stream) Read(p []byte) (int, error) {
	if s.tm == nil {
		return 0, errors.New("mask: Stream.Read before Header")
	}
	if s.batches == nil {
		s.start()
	}
	for s.off == len(s.out) {
		if s.done {
			if s.err != nil {
				return 0, s.err
			}
			return 0, io.EOF
		}
		if s.out != nil {
			select {
			case s.free <- s.out[:0]:
			default:
			}
		}
		b := <-s.batches
		s.out, s.off = b.data, 0
		if b.err != nil {
			s.done, s.err = true, b.err
			return 0, b.err
		}
		s.done = b.last
	}
	n := copy(p, s.out[s.off:])
	s.off += n
	return n, nil
}

// Close stops masking ahead; a Stream read to its end needs no Close.
func (s *Stream) Close() error {
	if s.stop != nil {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
		s.wg.Wait()
	}
	return nil
}

// Drain reads what follows the COPY data, so that pg_restore can finish writing.
func (s *Stream) Drain() error {
	s.wg.Wait() // the masking goroutine has sent its last batch
	_, err := io.Copy(io.Discard, s.br)
	return err
}
