package schema

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// migrationName is golang-migrate's file name pattern: <version>_<name>.<up|down>.<ext>.
var migrationName = regexp.MustCompile(`^([0-9]+)_(.*)\.(down|up)\.(.*)$`)

// Folder is a validated migrations folder.
type Folder struct {
	Dir        string      // absolute path
	Migrations []Migration // the .up files, by version
}

// Latest returns the newest version in the folder (0 when it holds none).
func (f *Folder) Latest() uint {
	if len(f.Migrations) == 0 {
		return 0
	}
	return f.Migrations[len(f.Migrations)-1].Version
}

// Has reports whether version is one of the folder's migrations.
func (f *Folder) Has(version uint) bool {
	_, ok := f.find(version)
	return ok
}

func (f *Folder) find(version uint) (Migration, bool) {
	i, ok := slices.BinarySearchFunc(f.Migrations, version, func(m Migration, v uint) int {
		switch {
		case m.Version < v:
			return -1
		case m.Version > v:
			return 1
		}
		return 0
	})
	if !ok {
		return Migration{}, false
	}
	return f.Migrations[i], true
}

// pending returns the migrations newer than version, or all without a version.
func (f *Folder) pending(version uint, hasVersion bool) []Migration {
	if !hasVersion {
		return append([]Migration(nil), f.Migrations...)
	}
	return f.after(version)
}

// after returns the migrations newer than version.
func (f *Folder) after(version uint) []Migration {
	var out []Migration
	for _, m := range f.Migrations {
		if m.Version > version {
			out = append(out, m)
		}
	}
	return out
}

// ReadFolder reads and validates a golang-migrate folder: it must exist and hold at least one
// migration, every file that looks like a migration (a name ending in .sql, containing
// ".up." or ".down.", or starting with a digit) must parse as <version>_<name>.<up|down>.<ext>,
// no two files may share a version and direction, and every version needs an .up file.
// Errors wrap ErrMigrations and name the offending files.
func ReadFolder(dir string) (*Folder, error) {
	abs, entries, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	files := sortFiles(entries)
	if problems := files.problems(); len(problems) > 0 {
		return nil, fmt.Errorf("%w: %s: %s", ErrMigrations, abs, strings.Join(problems, "; "))
	}
	f := &Folder{Dir: abs}
	for _, v := range files.versions() {
		f.Migrations = append(f.Migrations, Migration{Version: v, Name: files.names[v],
			Path: filepath.Join(abs, files.byKey[fileKey{v, true}][0])})
	}
	if len(f.Migrations) == 0 {
		return nil, fmt.Errorf("%w: %s holds no migrations (<version>_<name>.up.sql)", ErrMigrations, abs)
	}
	return f, nil
}

// readDir returns the absolute path of the migrations folder dir and its entries.
func readDir(dir string) (string, []os.DirEntry, error) {
	if dir == "" {
		return "", nil, fmt.Errorf("%w: no migrations folder given", ErrMigrations)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %s: %w", ErrMigrations, dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", nil, fmt.Errorf("%w: folder %s does not exist", ErrMigrations, abs)
	case err != nil:
		return "", nil, fmt.Errorf("%w: %w", ErrMigrations, err)
	case !fi.IsDir():
		return "", nil, fmt.Errorf("%w: %s is not a folder", ErrMigrations, abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrMigrations, err)
	}
	return abs, entries, nil
}

// fileKey is a migration file's version and direction.
type fileKey struct {
	version uint
	up      bool
}

// migrationFiles are a folder's files sorted by what their names say.
type migrationFiles struct {
	byKey     map[fileKey][]string // the files of each version and direction
	names     map[uint]string      // the name part of each version's .up file
	malformed []string             // files that look like migrations and do not parse
}

// sortFiles sorts a folder's entries into migrationFiles; folders and files that do not
// look like migrations are left out.
func sortFiles(entries []os.DirEntry) migrationFiles {
	files := migrationFiles{byKey: map[fileKey][]string{}, names: map[uint]string{}}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			if looksLikeMigration(name) {
				files.malformed = append(files.malformed, name)
			}
			continue
		}
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || uint64(uint(v)) != v || v > 1<<63-1 {
			files.malformed = append(files.malformed, name)
			continue
		}
		k := fileKey{uint(v), m[3] == "up"}
		files.byKey[k] = append(files.byKey[k], name)
		if k.up {
			files.names[k.version] = m[2]
		}
	}
	return files
}

// problems returns what is wrong with the files, sorted: malformed names, two files for
// one version and direction, a .down file without its .up file.
func (files migrationFiles) problems() []string {
	var problems []string
	if len(files.malformed) > 0 {
		problems = append(problems, fmt.Sprintf("malformed migration file names (want <version>_<name>.up.sql / .down.sql): %s",
			strings.Join(files.malformed, ", ")))
	}
	for k, names := range files.byKey {
		if len(names) > 1 {
			slices.Sort(names)
			dir := "down"
			if k.up {
				dir = "up"
			}
			problems = append(problems, fmt.Sprintf("duplicate %s migrations for version %d: %s", dir, k.version, strings.Join(names, ", ")))
		}
		if _, ok := files.byKey[fileKey{k.version, true}]; !k.up && !ok {
			problems = append(problems, fmt.Sprintf("%s has no .up file", names[0]))
		}
	}
	slices.Sort(problems)
	return problems
}

// versions returns the versions that have an .up file, in order.
func (files migrationFiles) versions() []uint {
	var vs []uint
	for k := range files.byKey {
		if k.up {
			vs = append(vs, k.version)
		}
	}
	slices.Sort(vs)
	return vs
}

// looksLikeMigration reports whether a file name that does not parse was probably meant to be
// a migration (and is therefore an error rather than a README or a .keep file).
func looksLikeMigration(name string) bool {
	lower := strings.ToLower(name)
	return strings.HasSuffix(lower, ".sql") ||
		strings.Contains(lower, ".up.") || strings.Contains(lower, ".down.") ||
		strings.HasSuffix(lower, ".up") || strings.HasSuffix(lower, ".down") ||
		(len(name) > 0 && name[0] >= '0' && name[0] <= '9')
}
