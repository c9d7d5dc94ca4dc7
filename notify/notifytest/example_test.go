package notifytest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

// A target that is down, behind a Spool: the report is spooled, then delivered once the
// target is back.
func ExampleFake() {
	dir, err := os.MkdirTemp("", "notifytest-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	target := &notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
		return errors.New("connection refused")
	}}
	spool, err := notify.NewSpool(dir, target, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	err = spool.Notify(ctx, notifytest.Message("run-1"))
	fmt.Println("spooled:", errors.Is(err, notify.ErrSpooled), "delivered:", len(target.Messages()))

	target.NotifyFunc = nil // the target is back
	if err := spool.Flush(ctx); err != nil {
		panic(err)
	}
	for _, r := range target.Reports() {
		fmt.Println("delivered:", r.ID, r.Subject)
	}
	// Output:
	// spooled: true delivered: 0
	// delivered: run-1 [staging-rebuild] FAILED: staging rebuild failed at step restore
}
