package staging

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/restage/restage/schema"
)

func TestDeployFromWaitingClone(t *testing.T) {
	w := newWorld()
	w.dbs["staging_next"] = "backup 7 @v1" // left by the nightly rebuild's clones
	rep, err := w.rebuilder(t).Deploy(context.Background(), DeployOptions{RefreshDB: true, RequestedBy: "alice"})
	if err != nil {
		t.Fatalf("Deploy: %v\n%s", err, rep.Text())
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 7 @v2 staging_prev=backup 0 @v1] current=r1 running=true serving=r1/backup 7 @v2"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	if rep.Kind != "deploy" || rep.RequestedBy != "alice" || !strings.Contains(rep.Text(), "requested by: alice") {
		t.Fatalf("report %+v", rep)
	}
}

func TestDeployKeepsDatabaseAndUpgradesACopy(t *testing.T) {
	w := newWorld()
	rep, err := w.rebuilder(t).Deploy(context.Background(), DeployOptions{})
	if err != nil {
		t.Fatalf("Deploy: %v\n%s", err, rep.Text())
	}
	if got, want := w.snapshot(), "dbs=[staging=backup 0 @v2 staging_prev=backup 0 @v1] current=r1 running=true serving=r1/backup 0 @v2"; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestDeployFailingMigrationLeavesEnvironmentAsItWas(t *testing.T) {
	for _, waiting := range []bool{false, true} {
		w := newWorld()
		if waiting {
			w.dbs["staging_next"] = "backup 7 @v1"
		}
		before := w.snapshot()
		w.failSchema = fail
		rep, err := w.rebuilder(t).Deploy(context.Background(), DeployOptions{})
		if !errors.Is(err, errInjected) || rep.FailedStep != "schema" {
			t.Fatalf("waiting=%v: err %v step %q", waiting, err, rep.FailedStep)
		}
		if got := w.snapshot(); got != before && !waiting {
			t.Fatalf("changed:\n got %s\nwant %s", got, before)
		}
		if w.dbs["staging"] != "backup 0 @v1" || w.current != "r0" || !w.running {
			t.Fatalf("waiting=%v: live environment changed: %s", waiting, w.snapshot())
		}
	}
}

func TestDeployRefusesReleaseBehindDatabase(t *testing.T) {
	w := newWorld()
	before := w.snapshot()
	r := w.rebuilder(t, func(c *Config) { c.Schema = aheadSchema{w} })
	rep, err := r.Deploy(context.Background(), DeployOptions{})
	if !errors.Is(err, schema.ErrAhead) || !strings.Contains(err.Error(), "is at 5") {
		t.Fatalf("err = %v", err)
	}
	if w.snapshot() != before || rep.FailedStep != "check" {
		t.Fatalf("changed, or step %q", rep.FailedStep)
	}
	// Asking for a refresh without a waiting clone is refused before anything changes.
	_, err = w.rebuilder(t).Deploy(context.Background(), DeployOptions{RefreshDB: true})
	if !errors.Is(err, ErrNoClone) || w.snapshot() != before {
		t.Fatalf("err = %v", err)
	}
}

type aheadSchema struct{ *world }

func (a aheadSchema) Status(ctx context.Context, t schema.Target) (*schema.Status, error) {
	return &schema.Status{Version: 5, Latest: 3}, nil
}
