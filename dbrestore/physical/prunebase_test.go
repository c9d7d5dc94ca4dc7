package physical

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestPruneBaseRemovesOnlyItsOwnBackups plants manifests whose backup is the folder's
// parent, the folder itself or another tool's folder beside them: a prune must refuse
// them (ErrCorrupt) and remove nothing, where it removed the parent of the backup folder
// whole.
func TestPruneBaseRemovesOnlyItsOwnBackups(t *testing.T) {
	for _, tc := range []struct{ name, backup string }{
		{"parent", ".."},
		{"the folder itself", "."},
		{"another tool's folder", "pgbackrest"},
		{"another manifest's backup", "basebackup-20200101T000000Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			precious := filepath.Join(top, "precious.txt")
			dir := filepath.Join(top, "backups")
			other := filepath.Join(dir, "pgbackrest")
			for _, d := range []string{other, filepath.Join(dir, "basebackup-20200101T000000Z")} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			write := func(name string, m BaseManifest) {
				t.Helper()
				data, _ := json.Marshal(m)
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(precious, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			// The planted manifest, the oldest, and the file a prune removes first.
			write("basebackup-20200101T000001Z"+BaseManifestSuffix, BaseManifest{Kind: "basebackup", Backup: tc.backup, Created: time.Unix(0, 0)})
			write(tc.backup+BaseManifestSuffix, BaseManifest{Kind: "basebackup", Backup: tc.backup, Created: time.Unix(1, 0)})
			for _, name := range []string{"basebackup-20260101T000000Z", "basebackup-20260102T000000Z"} {
				if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
					t.Fatal(err)
				}
				write(name+BaseManifestSuffix, BaseManifest{Kind: "basebackup", Backup: name, Created: time.Now()})
			}
			if err := pruneBase(dir, 1); !errors.Is(err, ErrCorrupt) {
				t.Errorf("prune: %v, want ErrCorrupt", err)
			}
			for _, p := range []string{precious, other, filepath.Join(dir, "basebackup-20260101T000000Z")} {
				if _, err := os.Stat(p); err != nil {
					t.Errorf("the prune removed %s: %v", p, err)
				}
			}
		})
	}
}

// TestPruneBaseRemovesStaleLeftovers: a base backup killed mid-way (SIGKILL, a
// reboot) leaves its .tmp- folder, or its folder without a manifest when it died
// between the rename and the manifest: each a copy of production's whole cluster,
// which no prune removed, so they filled the backup folder's disk. Those untouched for
// a day go with the next prune; a fresh one (a backup still being written) and other
// names stay.
func TestPruneBaseRemovesStaleLeftovers(t *testing.T) {
	dir := t.TempDir()
	old := time.Now().Add(-48 * time.Hour)
	mk := func(name string, when time.Time, manifest bool) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "base"), 0o700); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(p, "base", "1")
		if err := os.WriteFile(f, []byte("production's rows"), 0o600); err != nil {
			t.Fatal(err)
		}
		if manifest {
			data, _ := json.Marshal(BaseManifest{Kind: "basebackup", Backup: name, Created: when})
			if err := os.WriteFile(p+BaseManifestSuffix, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, q := range []string{f, filepath.Join(p, "base"), p} {
			if err := os.Chtimes(q, when, when); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	staleTmp := mk(".tmp-basebackup-20200101T000000Z", old, false)
	unpublished := mk("basebackup-20200102T000000Z", old, false)
	writing := mk(".tmp-basebackup-20200103T000000Z", time.Now(), false)
	other := mk(".tmp-something-else", old, false)
	otherTool := mk("basebackup-notes", old, false)
	pruned := mk("basebackup-20260101T000000Z", old, true)
	kept := mk("basebackup-20260102T000000Z", time.Now(), true)
	if err := pruneBase(dir, 1); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{staleTmp: false, unpublished: false, pruned: false,
		writing: true, other: true, otherTool: true, kept: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: present %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
