package historytest

import (
	"testing"
	"time"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
)

// planned returns a world on its second night (whose restore succeeds).
func planned(t *testing.T) *world {
	t.Helper()
	w, err := newWorld(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.plan(1, time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestDatabasesConformance: the stand-in staging server keeps dbrestore.Server's
// promises, the clock it moves aside.
func TestDatabasesConformance(t *testing.T) {
	fake := func(s dbrestoretest.Server) *dbrestoretest.Fake { return s.(*databases).Fake }
	dbrestoretest.Admin(t, dbrestoretest.Fixture{
		New:      func(t *testing.T) dbrestoretest.Server { return &databases{Fake: &dbrestoretest.Fake{}, w: planned(t)} },
		SystemID: 1, // the zero Fake's
		Create:   func(_ *testing.T, s dbrestoretest.Server, name, mark string) { fake(s).Create(name, mark) },
		Mark: func(_ *testing.T, s dbrestoretest.Server, name string) string {
			c, _ := fake(s).Content(name)
			return c
		},
		Backup: func(t *testing.T) (*dbrestore.Backup, string) {
			b, err := (*catalog)(planned(t)).Wait(t.Context(), dbrestore.WaitOptions{Database: prodDB})
			if err != nil {
				t.Fatal(err)
			}
			return b, b.Path // what a Fake's restored database holds
		},
	})
}
