package dbrestore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A directory dump holding a symbolic link (pg_restore would follow it, unhashed) or
// that is itself a link is refused by the checksum.
func TestDirectoryDumpWithALinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	dump := filepath.Join(dir, "db.dir")
	if err := os.Mkdir(dump, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dump, "toc.dat"), []byte("toc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checksum(context.Background(), dump, FormatDirectory, nil); err != nil {
		t.Fatalf("a plain directory dump: %v", err)
	}
	outside := filepath.Join(dir, "elsewhere.dat")
	if err := os.WriteFile(outside, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dump, "3.dat")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checksum(context.Background(), dump, FormatDirectory, nil); err == nil || !strings.Contains(err.Error(), "3.dat in the dump") {
		t.Fatalf("a link in the dump: %v", err)
	}
	link := filepath.Join(dir, "link.dir")
	if err := os.Symlink(dump, link); err != nil {
		t.Fatal(err)
	}
	if _, _, err := checksum(context.Background(), link, FormatDirectory, nil); err == nil || !strings.Contains(err.Error(), "not a folder") {
		t.Fatalf("a dump folder that is a link: %v", err)
	}
}
