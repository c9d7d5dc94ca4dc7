package physical_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
)

// listing is every path under dir with its size and its link's target: what a test
// compares to see that nothing under dir was touched.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target, _ := os.Readlink(p)
		fmt.Fprintf(&b, "%s %d %s %s\n", p, fi.Size(), fi.ModTime(), target)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// productionWithTablespace starts a production cluster with a tablespace ts (in its
// folder, on this host) holding table item of database shop (1000 rows, autovacuum off
// so that its files change only when a test changes them), and returns ts's path.
func productionWithTablespace(t *testing.T) (*physicaltest.Production, string) {
	t.Helper()
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{})
	fi, err := os.Stat(prod.Dir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	ts := filepath.Join(prod.Dir, "ts")
	if err := os.Mkdir(ts, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ts, int(st.Uid), int(st.Gid)); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{"CREATE TABLESPACE ts LOCATION '" + ts + "'", "CREATE DATABASE shop"} {
		if err := prod.Exec(ctx, "postgres", sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.Exec(ctx, "shop", "CREATE TABLE item WITH (autovacuum_enabled = off) TABLESPACE ts AS SELECT g AS id FROM generate_series(1, 1000) g; CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	return prod, ts
}

// TestBaseBackupTablespaces: a cluster with a tablespace is neither backed up by
// BaseBackup (a plain pg_basebackup writes it at production's path) nor restored from a
// base backup another way made (its pg_tblspc links, or its tablespace_map, name
// production's paths): the errors say so, and neither path is touched.
func TestBaseBackupTablespaces(t *testing.T) {
	bin := physicaltest.Require(t)
	ctx := context.Background()
	prod, ts := productionWithTablespace(t)
	prodTS := listing(t, ts)

	for _, plain := range []bool{false, true} {
		dir := t.TempDir()
		_, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: prod.DSN("postgres"), Dir: dir, Plain: plain, BinDir: bin})
		if !errors.Is(err, physical.ErrTablespace) || !strings.Contains(err.Error(), "ts at "+ts) {
			t.Errorf("BaseBackup (plain %v) = %v; want ErrTablespace naming ts at %s", plain, err, ts)
		}
		if left, _ := os.ReadDir(dir); len(left) > 0 {
			t.Errorf("BaseBackup (plain %v) left %v", plain, left)
		}
	}

	cl, clDir := newClusters(t, bin, nil)
	id, err := prod.SystemIdentifier(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Base backups made with pg_basebackup itself, as on another host: plain with the
	// tablespace written elsewhere (-T), tar with one tar file per tablespace, and tar
	// with that file gone (the tablespace_map in base.tar.gz remains).
	for _, tc := range []struct{ name, format, says string }{
		{"plain", "plain", "pg_tblspc/"},
		{"tar", "tar", ".tar.gz"},
		{"tar without the tablespace's file", "tar", "its tablespace_map names some"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			label := "basebackup-20261202T000000Z"
			backup := filepath.Join(dir, label)
			mapped := filepath.Join(t.TempDir(), "ts-elsewhere")
			argv := []string{filepath.Join(bin, "pg_basebackup"), "-d", prod.DSN("postgres"), "-D", backup, "-X", "stream", "-c", "fast", "-w"}
			if tc.format == "plain" {
				argv = append(argv, "-T", ts+"="+mapped)
			} else {
				argv = append(argv, "-F", "tar", "-z")
			}
			if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("pg_basebackup: %v\n%s", err, out)
			}
			if tc.says == "its tablespace_map names some" {
				extra, _ := filepath.Glob(filepath.Join(backup, "[0-9]*.tar.gz"))
				for _, f := range extra {
					if err := os.Remove(f); err != nil {
						t.Fatal(err)
					}
				}
			}
			sum, size, err := physical.TreeSum(backup)
			if err != nil {
				t.Fatal(err)
			}
			m, _ := json.Marshal(physical.BaseManifest{Kind: "basebackup", Format: tc.format, Backup: label, Created: time.Now().UTC(),
				Size: size, SHA256: sum, SystemIdentifier: id, ServerVersion: filepath.Base(filepath.Dir(bin))})
			if err := os.WriteFile(backup+physical.BaseManifestSuffix, m, 0o600); err != nil {
				t.Fatal(err)
			}
			var mappedBefore string
			if tc.format == "plain" {
				mappedBefore = listing(t, mapped)
			}
			src := &physical.BaseBackupDir{Dir: dir}
			set, err := src.Latest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = cl.Restore(ctx, src, set, false)
			if !errors.Is(err, physical.ErrTablespace) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Restore = %v; want ErrTablespace saying %q", err, tc.says)
			}
			if tc.format == "plain" && (!strings.Contains(err.Error(), mapped) || listing(t, mapped) != mappedBefore) {
				t.Errorf("the error does not name the tablespace's path %s, or the path changed: %v", mapped, err)
			}
			// No link under the slots leads out of them.
			_ = filepath.WalkDir(clDir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type()&os.ModeSymlink != 0 {
					if target, _ := os.Readlink(p); !strings.HasPrefix(target, clDir) {
						t.Errorf("%s links to %s", p, target)
					}
				}
				return nil
			})
			// Tablespaces the backup's files show are refused before the idle slot is
			// touched; a tablespace_map inside base.tar.gz only while it is unpacked,
			// leaving a half-restored slot for the repair.
			unpacked := tc.says == "its tablespace_map names some"
			if did, err := cl.Repair(ctx); err != nil || strings.Contains(strings.Join(did, "; "), "half-restored") != unpacked {
				t.Errorf("repair after the refused restore: %v, %v (want half-restored: %v)", did, err, unpacked)
			}
		})
	}

	// pgBackRest's restore maps the tablespace into the slot's tablespaces folder; a full
	// restore into the slot again empties that folder first.
	t.Run("pgbackrest maps it into the slot", func(t *testing.T) {
		if err := prod.Backup(ctx, "full"); err != nil {
			t.Fatal(err)
		}
		prodTS = listing(t, ts) // the backup's checkpoint may write there
		src, err := physical.NewPgBackRest(physical.PgBackRestConfig{Stanza: physicaltest.Stanza, Config: prod.Config})
		if err != nil {
			t.Fatal(err)
		}
		set, err := src.Latest(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slot, err := cl.Restore(ctx, src, set, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Stop(context.Background(), slot) })
		spaces := filepath.Join(slot.Dir, "tablespaces")
		links, _ := filepath.Glob(filepath.Join(slot.Data, "pg_tblspc", "*"))
		for _, l := range links {
			if target, err := os.Readlink(l); err != nil || !strings.HasPrefix(target, spaces+"/") {
				t.Errorf("%s links to %q (%v), not into %s", l, target, err, spaces)
			}
		}
		if len(links) != 1 {
			t.Fatalf("pg_tblspc holds %v, want one link", links)
		}
		if err := cl.StartSide(ctx, slot); err != nil {
			t.Fatal(err)
		}
		if n := count(t, cl, slot, false, "shop", "SELECT count(*) FROM item"); n != 1000 {
			t.Fatalf("%d items in the restored tablespace, want 1000", n)
		}
		if err := cl.Stop(ctx, slot); err != nil {
			t.Fatal(err)
		}
		stray := filepath.Join(spaces, "stray")
		if err := os.WriteFile(stray, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.Restore(ctx, src, set, false); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(stray); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a full restore into the slot kept its old tablespaces folder's content (%v)", err)
		}
	})
	if listing(t, ts) != prodTS {
		t.Error("production's tablespace folder changed")
	}
}
