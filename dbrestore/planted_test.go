package dbrestore_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
)

// A FIFO planted in the backup folder as the newest dump, or as a manifest, is refused
// at once: the nightly never waits on it (it would hold the lock, and cron off, for good).
func TestPlantedFIFOIsRefused(t *testing.T) {
	for _, planted := range []string{"dump", "manifest"} {
		t.Run(planted, func(t *testing.T) {
			dir := t.TempDir()
			dump := "db-20990101T000000.000Z.dump"
			manifest := "db-20990101T000000.000Z.manifest.json"
			fifo := filepath.Join(dir, dump)
			if planted == "manifest" {
				fifo = filepath.Join(dir, manifest)
			} else {
				m := `{"database":"db","format":"custom","created":"` + time.Now().UTC().Format(time.RFC3339) +
					`","size":10,"sha256":"00","system_identifier":"7","dump":"` + dump + `"}`
				if err := os.WriteFile(filepath.Join(dir, manifest), []byte(m), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			cat, err := dbrestore.NewCatalog(dir, dbrestore.Config{})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				b, err := cat.Latest("db")
				if err != nil {
					done <- err
					return
				}
				done <- cat.Verify(context.Background(), b)
			}()
			select {
			case err := <-done:
				want := map[string]string{"dump": "not a regular file", "manifest": "unreadable manifest"}[planted]
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(10 * time.Second):
				if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close() // let the blocked open return
				}
				t.Fatal("still waiting on a planted FIFO after 10s")
			}
		})
	}
}
