package safefile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// victim is a file a planted link points at; unchanged fails the test if it changed.
func victim(t *testing.T) (path string, unchanged func()) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(path, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		st, err := os.Stat(path)
		if data, _ := os.ReadFile(path); err != nil || string(data) != "precious\n" || st.Mode().Perm() != 0o644 {
			t.Fatalf("victim changed: %q %v %v", data, st, err)
		}
	}
}

func refused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, syscall.ELOOP) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("%s: err = %v, want a refused symbolic link", what, err)
	}
}

func TestPlantedLinksAreRefused(t *testing.T) {
	target, unchanged := victim(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "state")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_CREATE | os.O_TRUNC} {
		_, err := Open(link, flag, 0o600)
		refused(t, "Open", err)
		_, err = OpenPrivate(link, flag)
		refused(t, "OpenPrivate", err)
	}
	_, err := ReadFile(link, 100)
	refused(t, "ReadFile", err)
	refused(t, "MkdirPrivate", MkdirPrivate(link))
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	refused(t, "MkdirPrivate, dangling link", MkdirPrivate(dangling))
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !os.IsNotExist(err) {
		t.Fatal("a dangling link's target was created")
	}
	linkDir := filepath.Join(dir, "linkdir")
	if err := os.Symlink(t.TempDir(), linkDir); err != nil {
		t.Fatal(err)
	}
	refused(t, "MkdirPrivate, link to a folder", MkdirPrivate(linkDir))
	unchanged()
}

func TestOpenPrivateModes(t *testing.T) {
	dir := t.TempDir()
	created := filepath.Join(dir, "created")
	f, err := OpenPrivate(created, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if f, err = OpenPrivate(old, os.O_RDONLY); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(old); st.Mode().Perm() != 0o644 {
		t.Fatalf("reading changed the mode to %v", st.Mode().Perm())
	}
	if f, err = OpenPrivate(old, os.O_RDWR); err != nil {
		t.Fatal(err)
	}
	f.Close()
	narrow := filepath.Join(dir, "narrow")
	if err := os.WriteFile(narrow, nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if f, err = OpenPrivate(narrow, os.O_RDONLY); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for p, want := range map[string]os.FileMode{created: 0o600, old: 0o600, narrow: 0o400} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", p, st.Mode().Perm(), err, want)
		}
	}
}

// A FIFO or a folder planted at a state file's path is refused, without blocking;
// Open, for files of any kind (a lock file), takes a FIFO.
func TestOpenPrivateRefusesOtherKinds(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := OpenPrivate(fifo, os.O_RDONLY); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO, for reading: err = %v", err)
		}
		// For writing, without a reader: ENXIO rather than a wait.
		if _, err := OpenPrivate(fifo, os.O_WRONLY|os.O_TRUNC); err == nil {
			t.Error("FIFO, for writing: opened")
		}
		if _, err := ReadFile(dir, 100); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("folder: err = %v", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("OpenPrivate blocked on a FIFO")
	}
	f, err := Open(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("Open of a FIFO: %v", err)
	}
	f.Close()
}

func TestReadFileBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if data, err := ReadFile(path, 10); err != nil || string(data) != "0123456789" {
		t.Fatalf("ReadFile = %q, %v", data, err)
	}
	if _, err := ReadFile(path, 9); err == nil || !strings.Contains(err.Error(), "larger than 9 bytes") {
		t.Fatalf("ReadFile past the bound: %v", err)
	}
	if _, err := ReadFile(path+".missing", 9); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestMkdirPrivate(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "var", "restage")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, filepath.Dir(dir)} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", p, st, err)
		}
	}
	if err := MkdirPrivate(dir); err != nil {
		t.Fatalf("again: %v", err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(file); !errors.Is(err, syscall.ENOTDIR) {
		t.Fatalf("a file there: %v", err)
	}
}

// A folder another user may write to, or owns, is refused: that user could plant the
// files restage reads back and acts on (a cutover record, a spooled report, a pidfile).
func TestMkdirPrivateRefusesFoldersOthersControl(t *testing.T) {
	base := t.TempDir()
	for _, mode := range []os.FileMode{0o777, os.ModeSticky | 0o777, 0o770, 0o702} {
		dir := filepath.Join(base, "open")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		for name, check := range map[string]func(string) error{"MkdirPrivate": MkdirPrivate, "CheckPrivateDir": CheckPrivateDir} {
			if err := check(dir); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), "other users write") {
				t.Errorf("%s of a folder of mode %v: %v, want it refused", name, mode, err)
			}
		}
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
	}
	// Its own folder with the group's and others' read and search bits is private.
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := MkdirPrivate(own); err != nil {
		t.Fatalf("its own 0755 folder: %v", err)
	}
	if err := CheckPrivateDir(own); err != nil {
		t.Fatalf("its own 0755 folder: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: the test of a folder another user owns needs chown")
		return
	}
	foreign := filepath.Join(base, "foreign")
	if err := os.Mkdir(foreign, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(foreign, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	for name, check := range map[string]func(string) error{"MkdirPrivate": MkdirPrivate, "CheckPrivateDir": CheckPrivateDir} {
		if err := check(foreign); !errors.Is(err, ErrNotPrivate) || !strings.Contains(err.Error(), "belongs to user id 65534") {
			t.Errorf("%s of another user's folder: %v, want it refused", name, err)
		}
	}
}
