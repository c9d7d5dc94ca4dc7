package physical_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/dbrestore/physical"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
)

func TestBaseBackup(t *testing.T) {
	for _, plain := range []bool{false, true} {
		t.Run(map[bool]string{false: "tar", true: "plain"}[plain], func(t *testing.T) {
			bin := physicaltest.Require(t)
			ctx := context.Background()
			prod := physicaltest.Start(t, physicaltest.Options{})
			for _, sql := range []string{"CREATE DATABASE shop", "CREATE DATABASE other"} {
				if err := prod.Exec(ctx, "postgres", sql); err != nil {
					t.Fatal(err)
				}
			}
			if err := prod.Exec(ctx, "shop", "CREATE TABLE item AS SELECT g AS id FROM generate_series(1, 3000) g"); err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			mpath, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: prod.DSN("postgres"), Dir: dir, Plain: plain, BinDir: bin, Keep: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: "postgres://postgres:pw@127.0.0.1:1/x", Dir: dir}); err == nil || !strings.Contains(err.Error(), "the DSN holds a password") {
				t.Fatalf("a password in the DSN: %v; want it refused", err)
			}
			src := &physical.BaseBackupDir{Dir: dir}
			set, err := src.Latest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			id, _ := prod.SystemIdentifier(ctx)
			if set.SystemIdentifier != id || filepath.Join(dir, set.Label)+physical.BaseManifestSuffix != mpath {
				t.Fatalf("set %+v, manifest %s", set, mpath)
			}
			cl, clDir := newClusters(t, bin, nil)
			slot, err := cl.Restore(ctx, src, set, true)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cl.Stop(context.Background(), slot) })
			if err := cl.StartSide(ctx, slot); err != nil {
				t.Fatal(err)
			}
			if _, err := cl.Neutralize(ctx, slot, physical.NeutralizeOptions{From: "shop", To: "shop_staging"}); err != nil {
				t.Fatal(err)
			}
			if n := count(t, cl, slot, false, "shop_staging", "SELECT count(*) FROM item"); n != 3000 {
				t.Fatalf("%d items, want 3000", n)
			}
			if err := cl.Stop(ctx, slot); err != nil {
				t.Fatal(err)
			}

			// A flipped byte: the checksum refuses the backup before the slot is replaced.
			var victim string
			_ = filepath.WalkDir(filepath.Join(dir, set.Label), func(p string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() && victim == "" {
					if fi, _ := d.Info(); fi.Size() > 100 {
						victim = p
					}
				}
				return nil
			})
			data, _ := os.ReadFile(victim)
			data[len(data)/2] ^= 0xff
			if err := os.WriteFile(victim, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := src.Restore(ctx, set, filepath.Join(filepath.Dir(clDir), "x"), physical.RestoreOptions{}); !errors.Is(err, physical.ErrChecksum) {
				t.Fatalf("want ErrChecksum, got %v", err)
			}
			if err := src.Verify(ctx, set); !errors.Is(err, physical.ErrChecksum) {
				t.Fatalf("Verify: want ErrChecksum, got %v", err)
			}
			// The idle slot (here the one just restored) keeps its copy: the corrupt
			// backup is refused before the slot is emptied.
			if _, err := cl.Restore(ctx, src, set, false); !errors.Is(err, physical.ErrChecksum) {
				t.Fatalf("Clusters.Restore of a corrupt backup: want ErrChecksum, got %v", err)
			}
			if _, err := os.Stat(filepath.Join(slot.Data, "PG_VERSION")); err != nil {
				t.Fatalf("a corrupt backup emptied the idle slot: %v", err)
			}
		})
	}
}

// A base backup holds the whole cluster: it is its owner's alone (folders 0700, files
// 0600), as a dump is, even when production's data directory is group-readable (pg_basebackup
// keeps production's modes: 0750 and 0640).
func TestBaseBackupIsPrivate(t *testing.T) {
	bin := physicaltest.Require(t)
	ctx := context.Background()
	prod := physicaltest.Start(t, physicaltest.Options{GroupAccess: true})
	for _, plain := range []bool{false, true} {
		dir := t.TempDir()
		if _, err := physical.BaseBackup(ctx, physical.BaseBackupOptions{DSN: prod.DSN("postgres"), Dir: dir, Plain: plain, BinDir: bin}); err != nil {
			t.Fatal(err)
		}
		backups, _ := filepath.Glob(filepath.Join(dir, "basebackup-*[0-9]Z"))
		if len(backups) != 1 {
			t.Fatalf("backups %v", backups)
		}
		files := 0
		err := filepath.WalkDir(backups[0], func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if d.IsDir() && fi.Mode().Perm() != 0o700 {
				t.Errorf("plain %v: folder %s has mode %v, want 0700", plain, p, fi.Mode().Perm())
			}
			if d.Type().IsRegular() {
				files++
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("plain %v: file %s has mode %v, want 0600", plain, p, fi.Mode().Perm())
				}
			}
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("plain %v: %d files, %v", plain, files, err)
		}
	}
}
