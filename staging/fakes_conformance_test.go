package staging

import (
	"testing"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/dbrestore/dbrestoretest"
)

// TestWorldConformance: the test world's databases keep dbrestore.Server's promises, as
// dbrestoretest.Admin checks them, so that the Rebuilder's tests run against a server
// that refuses what a real one refuses.
func TestWorldConformance(t *testing.T) {
	world := func(s dbrestoretest.Server) *world { return s.(*world) }
	dbrestoretest.Admin(t, dbrestoretest.Fixture{
		New:      func(*testing.T) dbrestoretest.Server { return newWorld() },
		SystemID: newWorld().sysID,
		Create: func(_ *testing.T, s dbrestoretest.Server, name, mark string) {
			w := world(s)
			w.mu.Lock()
			defer w.mu.Unlock()
			w.dbs[name] = mark
		},
		Mark: func(_ *testing.T, s dbrestoretest.Server, name string) string {
			w := world(s)
			w.mu.Lock()
			defer w.mu.Unlock()
			return w.dbs[name]
		},
		Backup: func(t *testing.T) (*dbrestore.Backup, string) {
			w := newWorld()
			b, err := w.Wait(t.Context(), dbrestore.WaitOptions{Database: "prod"})
			if err != nil {
				t.Fatal(err)
			}
			return b, w.restored()
		},
	})
}
