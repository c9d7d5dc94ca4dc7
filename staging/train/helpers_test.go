package train_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/restage/restage/staging/stagingtest"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// git runs git with args in the train's work tree; an error fails the test.
func git(t *testing.T, ctx context.Context, tr *stagingtest.Train, args ...string) {
	t.Helper()
	if _, err := stagingtest.Git(ctx, tr.Work, args...); err != nil {
		t.Fatal(err)
	}
}

// commit commits files (path: content) in the train's work tree and returns the commit;
// an error fails the test.
func commit(t *testing.T, ctx context.Context, tr *stagingtest.Train, msg string, files map[string]string) string {
	t.Helper()
	c, err := tr.Commit(ctx, msg, files)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
