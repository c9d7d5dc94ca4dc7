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
	if dir == "" {
		return nil, fmt.Errorf("%w: no migrations folder given", ErrMigrations)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMigrations, dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: folder %s does not exist", ErrMigrations, abs)
		}
		return nil, fmt.Errorf("%w: %w", ErrMigrations, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a folder", ErrMigrations, abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMigrations, err)
	}

	type key struct {
		version uint
		up      bool
	}
	seen := map[key][]string{}
	names := map[uint]string{}
	var malformed []string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		name := e.Name()
		m := migrationName.FindStringSubmatch(name)
		if m == nil {
			if looksLikeMigration(name) {
				malformed = append(malformed, name)
			}
			continue
		}
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || uint64(uint(v)) != v || v > 1<<63-1 {
			malformed = append(malformed, name)
			continue
		}
		k := key{uint(v), m[3] == "up"}
		seen[k] = append(seen[k], name)
		if k.up {
			names[k.version] = m[2]
		}
	}
	var problems []string
	if len(malformed) > 0 {
		problems = append(problems, fmt.Sprintf("malformed migration file names (want <version>_<name>.up.sql / .down.sql): %s",
			strings.Join(malformed, ", ")))
	}
	var versions []uint
	for k, files := range seen {
		if len(files) > 1 {
			slices.Sort(files)
			dir := "down"
			if k.up {
				dir = "up"
			}
			problems = append(problems, fmt.Sprintf("duplicate %s migrations for version %d: %s", dir, k.version, strings.Join(files, ", ")))
		}
		if k.up {
			versions = append(versions, k.version)
		} else if _, ok := seen[key{k.version, true}]; !ok {
			problems = append(problems, fmt.Sprintf("%s has no .up file", files[0]))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return nil, fmt.Errorf("%w: %s: %s", ErrMigrations, abs, strings.Join(problems, "; "))
	}
	if len(versions) == 0 {
		return nil, fmt.Errorf("%w: %s holds no migrations (<version>_<name>.up.sql)", ErrMigrations, abs)
	}
	slices.Sort(versions)
	f := &Folder{Dir: abs}
	for _, v := range versions {
		file := seen[key{v, true}][0]
		f.Migrations = append(f.Migrations, Migration{Version: v, Name: names[v], Path: filepath.Join(abs, file)})
	}
	return f, nil
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
