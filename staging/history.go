package staging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/atomicfile"
)

// HistoryFile is the name of the history file in the state folder: one JSON report per
// line, oldest first, at most Options.HistoryKeep of them.
const HistoryFile = "history.jsonl"

// DefaultHistoryKeep is how many runs the history keeps by default ([history] keep):
// more than a year of nightly rebuilds.
const DefaultHistoryKeep = 400

// ErrHistoryCorrupt marks a *HistoryError: lines of the history that could not be read.
var ErrHistoryCorrupt = errors.New("corrupt history")

// HistoryError lists the lines History skipped. The runs it returned with it are every
// other line of the history, so it is a warning rather than a failure.
type HistoryError struct {
	File  string      // the history file
	Lines []LineError // the skipped lines, in file order
}

// LineError is one line of a history that could not be read.
type LineError struct {
	Line int   // 1-based line number in the file
	Err  error // why it could not be read
}

// Error lists the skipped lines.
func (e *HistoryError) Error() string {
	parts := make([]string, 0, len(e.Lines))
	for _, l := range e.Lines {
		parts = append(parts, fmt.Sprintf("line %d: %v", l.Line, l.Err))
	}
	return fmt.Sprintf("%s: %d unreadable line(s) skipped: %s", e.File, len(e.Lines), strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrHistoryCorrupt) true.
func (e *HistoryError) Is(target error) bool { return target == ErrHistoryCorrupt }

// History reads the runs in stateDir's history, oldest first.
//
// A line that cannot be read (cut short by a crash, edited by hand, written by a newer
// restage) is skipped: History then returns every run it could read together with a
// *HistoryError naming the skipped lines (errors.Is(err, ErrHistoryCorrupt)), which
// callers show as a warning. Any other error comes with no runs: errors.Is(err,
// fs.ErrNotExist) when there is no history yet; a symlink at the file's path is refused.
// Lines written before durations were stored in seconds are read as well.
func History(stateDir string) ([]*Report, error) {
	return readHistory(stateDir, func(line []byte) (*Report, error) {
		rep := new(Report)
		return rep, json.Unmarshal(line, rep)
	})
}

// readHistory reads stateDir's history line by line through decode, as History
// describes (a line decode fails on, or whose report has no ID, is skipped and named).
func readHistory(stateDir string, decode func(line []byte) (*Report, error)) ([]*Report, error) {
	path := filepath.Join(stateDir, HistoryFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	data, err := readAll(f)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	var out []*Report
	var bad []LineError
	for i, line := range bytes.Split(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		rep, err := decode(line)
		if err == nil && rep.ID == "" {
			err = errors.New("not a report (no id)")
		}
		if err != nil {
			bad = append(bad, LineError{Line: i + 1, Err: err})
			continue
		}
		out = append(out, rep)
	}
	if len(bad) > 0 {
		return out, &HistoryError{File: path, Lines: bad}
	}
	return out, nil
}

// appendHistory appends rep as one JSON line to stateDir/history.jsonl and keeps the
// newest keep lines (keep <= 0: DefaultHistoryKeep). The file is 0600 in a 0700 folder
// and never opened through a symlink planted at its path (rule 12); a file left
// readable by an older version is narrowed. Only runs holding the environment's lock
// write it.
func appendHistory(stateDir string, rep *Report, keep int) error {
	if stateDir == "" {
		return nil
	}
	if keep <= 0 {
		keep = DefaultHistoryKeep
	}
	if err := mkdirPrivate(stateDir); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	line, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	path := filepath.Join(stateDir, HistoryFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	old, err := readAll(f)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	var sep []byte
	if len(old) > 0 && old[len(old)-1] != '\n' {
		sep = []byte("\n") // a line cut short by a crash stays on its own
	}
	if starts := lineStarts(old); len(starts)+1 > keep {
		// Past the bound: the newest keep-1 lines as they are (older formats and
		// unreadable lines included, until they age out) and this run's.
		tail := old[len(old):]
		if keep > 1 {
			tail = old[starts[len(starts)-(keep-1)]:]
		}
		if len(tail) == 0 {
			sep = nil
		}
		content := append(append(append(tail, sep...), line...), '\n')
		if err := atomicfile.WriteFile(path, content, 0o600); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		return nil
	}
	line = append(sep, line...)
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("history: %w", err)
	}
	return f.Close()
}

// lineStarts returns the offsets in data of its lines that are not blank.
func lineStarts(data []byte) []int {
	var out []int
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		if end < 0 {
			end = len(data) - off
		}
		if len(bytes.TrimSpace(data[off:off+end])) > 0 {
			out = append(out, off)
		}
		off += end + 1
	}
	return out
}

// readAll reads f whole into a buffer sized for it.
func readAll(f *os.File) ([]byte, error) {
	size := 0
	if st, err := f.Stat(); err == nil {
		size = int(st.Size())
	}
	b := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

// The history's JSON format. Version 2 (a "v": 2 key on each line) stores durations
// as seconds in keys named for it ("total_seconds", "duration_seconds", ...); lines
// without "v" were written before it, with durations in nanoseconds under the plain
// names ("total", "duration", ...). Report, Step, BackupInfo and MigrationTime encode
// version 2 wherever they are marshalled; a Report decodes both.
//
// Each version has its mirror types below, whose fields shadow the durations of the
// public types (which have no JSON methods in the mirrors: plain*), so that a line is
// decoded in one pass.

// historyVersion is the format Report.MarshalJSON writes.
const historyVersion = 2

// The types without their methods, for encoding/json to handle the other fields.
type (
	plainReport    Report
	plainStep      Step
	plainBackup    BackupInfo
	plainMigration MigrationTime
)

// seconds is a duration that is a number of seconds in JSON.
type seconds time.Duration

func (s seconds) MarshalJSON() ([]byte, error) {
	return strconv.AppendFloat(nil, time.Duration(s).Seconds(), 'f', -1, 64), nil
}

func (s *seconds) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(f, 0) || math.Abs(f) > math.MaxInt64/float64(time.Second) {
		return fmt.Errorf("bad number of seconds %s", b)
	}
	*s = seconds(math.Round(f * float64(time.Second))) // to the nanosecond it was written from
	return nil
}

// Version 2.
type (
	reportJSON struct {
		V int `json:"v"`
		plainReport
		Total    seconds     `json:"total_seconds"`
		Downtime seconds     `json:"downtime_seconds"`
		Backup   *backupJSON `json:"backup,omitempty"`
		Schema   *schemaJSON `json:"schema,omitempty"`
		Steps    []*stepJSON `json:"steps"`
	}
	stepJSON struct {
		plainStep
		Duration seconds `json:"duration_seconds"`
	}
	backupJSON struct {
		plainBackup
		Age seconds `json:"age_seconds"`
	}
	schemaJSON struct {
		From       uint            `json:"from"`
		To         uint            `json:"to"`
		Migrations []migrationJSON `json:"migrations"`
		Pending    []migrationJSON `json:"pending,omitempty"`
	}
	migrationJSON struct {
		plainMigration
		Duration seconds `json:"duration_seconds"`
	}
)

// Version 1: before versions.
type (
	reportV1 struct {
		plainReport
		Total    time.Duration `json:"total"`
		Downtime time.Duration `json:"downtime"`
		Backup   *backupV1     `json:"backup"`
		Schema   *schemaV1     `json:"schema"`
		Steps    []*stepV1     `json:"steps"`
	}
	stepV1 struct {
		plainStep
		Duration time.Duration `json:"duration"`
	}
	backupV1 struct {
		plainBackup
		Age time.Duration `json:"age"`
	}
	schemaV1 struct {
		From       uint          `json:"from"`
		To         uint          `json:"to"`
		Migrations []migrationV1 `json:"migrations"`
		Pending    []migrationV1 `json:"pending"`
	}
	migrationV1 struct {
		plainMigration
		Duration time.Duration `json:"duration"`
	}
)

func stepToJSON(s *Step) *stepJSON { return &stepJSON{plainStep(*s), seconds(s.Duration)} }

func backupToJSON(b *BackupInfo) *backupJSON { return &backupJSON{plainBackup(*b), seconds(b.Age)} }

func migrationsToJSON(in []MigrationTime) []migrationJSON {
	var out []migrationJSON
	for _, m := range in {
		out = append(out, migrationJSON{plainMigration(m), seconds(m.Duration)})
	}
	return out
}

// MarshalJSON encodes the step with its duration in seconds ("duration_seconds").
func (s Step) MarshalJSON() ([]byte, error) { return json.Marshal(stepToJSON(&s)) }

// UnmarshalJSON decodes what MarshalJSON encodes.
func (s *Step) UnmarshalJSON(b []byte) error {
	return decodeAs(b, func(aux *stepJSON) {
		*s = Step(aux.plainStep)
		s.Duration = time.Duration(aux.Duration)
	})
}

// MarshalJSON encodes the backup's information with its age in seconds ("age_seconds").
func (b BackupInfo) MarshalJSON() ([]byte, error) { return json.Marshal(backupToJSON(&b)) }

// UnmarshalJSON decodes what MarshalJSON encodes.
func (b *BackupInfo) UnmarshalJSON(data []byte) error {
	return decodeAs(data, func(aux *backupJSON) {
		*b = BackupInfo(aux.plainBackup)
		b.Age = time.Duration(aux.Age)
	})
}

// MarshalJSON encodes the migration with its duration in seconds ("duration_seconds").
func (m MigrationTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(migrationJSON{plainMigration(m), seconds(m.Duration)})
}

// UnmarshalJSON decodes what MarshalJSON encodes.
func (m *MigrationTime) UnmarshalJSON(b []byte) error {
	return decodeAs(b, func(aux *migrationJSON) {
		*m = MigrationTime(aux.plainMigration)
		m.Duration = time.Duration(aux.Duration)
	})
}

// decodeAs decodes b into its JSON form A, then hands that to set.
func decodeAs[A any](b []byte, set func(*A)) error {
	var aux A
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	set(&aux)
	return nil
}

// MarshalJSON encodes the report as a line of the history: format version 2
// ("v": 2), durations in seconds ("total_seconds", "downtime_seconds", and those of
// its steps, backup and migrations). The run's log (Log) is not part of it.
func (rep Report) MarshalJSON() ([]byte, error) {
	aux := reportJSON{V: historyVersion, plainReport: plainReport(rep),
		Total: seconds(rep.Total), Downtime: seconds(rep.Downtime)}
	if rep.Backup != nil {
		aux.Backup = backupToJSON(rep.Backup)
	}
	if s := rep.Schema; s != nil {
		aux.Schema = &schemaJSON{From: s.From, To: s.To, Migrations: migrationsToJSON(s.Migrations), Pending: migrationsToJSON(s.Pending)}
	}
	aux.Steps = make([]*stepJSON, 0, len(rep.Steps))
	for _, s := range rep.Steps {
		if s != nil {
			aux.Steps = append(aux.Steps, stepToJSON(s))
		}
	}
	return json.Marshal(aux)
}

// UnmarshalJSON decodes a line of the history in either format: version 2, or the
// lines written before versions, with durations in nanoseconds. A newer version is an
// error: its units are not known.
func (rep *Report) UnmarshalJSON(b []byte) error {
	v := 0
	if bytes.HasPrefix(b, []byte(`{"v":2,`)) { // as MarshalJSON writes it
		v = historyVersion
	} else {
		var probe struct {
			V *int `json:"v"`
		}
		if err := json.Unmarshal(b, &probe); err != nil {
			return err
		}
		if probe.V != nil {
			v = *probe.V
		}
	}
	switch v {
	case 0:
		var aux reportV1
		if err := json.Unmarshal(b, &aux); err != nil {
			return err
		}
		*rep = Report(aux.plainReport)
		rep.Total, rep.Downtime = aux.Total, aux.Downtime
		if a := aux.Backup; a != nil {
			rep.Backup = &BackupInfo{Name: a.Name, Path: a.Path, Database: a.Database, Created: a.Created, Age: a.Age, Size: a.Size}
		}
		if a := aux.Schema; a != nil {
			rep.Schema = &SchemaInfo{From: a.From, To: a.To}
			for _, m := range a.Migrations {
				rep.Schema.Migrations = append(rep.Schema.Migrations, MigrationTime{Version: m.Version, Name: m.Name, Duration: m.Duration})
			}
			for _, m := range a.Pending {
				rep.Schema.Pending = append(rep.Schema.Pending, MigrationTime{Version: m.Version, Name: m.Name, Duration: m.Duration})
			}
		}
		for _, s := range aux.Steps {
			if s != nil {
				step := Step(s.plainStep)
				step.Duration = s.Duration
				rep.Steps = append(rep.Steps, &step)
			}
		}
		return nil
	case historyVersion:
		var aux reportJSON
		if err := json.Unmarshal(b, &aux); err != nil {
			return err
		}
		*rep = Report(aux.plainReport)
		rep.Total, rep.Downtime = time.Duration(aux.Total), time.Duration(aux.Downtime)
		if a := aux.Backup; a != nil {
			rep.Backup = &BackupInfo{Name: a.Name, Path: a.Path, Database: a.Database, Created: a.Created, Age: time.Duration(a.Age), Size: a.Size}
		}
		if a := aux.Schema; a != nil {
			rep.Schema = &SchemaInfo{From: a.From, To: a.To}
			for _, m := range a.Migrations {
				rep.Schema.Migrations = append(rep.Schema.Migrations, MigrationTime{Version: m.Version, Name: m.Name, Duration: time.Duration(m.Duration), SHA256: m.SHA256})
			}
			for _, m := range a.Pending {
				rep.Schema.Pending = append(rep.Schema.Pending, MigrationTime{Version: m.Version, Name: m.Name, Duration: time.Duration(m.Duration)})
			}
		}
		for _, s := range aux.Steps {
			if s != nil {
				step := Step(s.plainStep)
				step.Duration = time.Duration(s.Duration)
				rep.Steps = append(rep.Steps, &step)
			}
		}
		return nil
	default:
		return unknownVersion(v)
	}
}

func unknownVersion(v int) error {
	return fmt.Errorf("history format version %d is not known to this restage (it reads up to %d)", v, historyVersion)
}
