package staging

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A run that succeeded but whose history line cannot be written says so: an error of
// its own (exit status 5), a note in the report it delivers; a failed run stays failed.
func TestHistoryNotWrittenIsSurfaced(t *testing.T) {
	w := newWorld()
	r := w.rebuilder(t)
	if err := os.Mkdir(filepath.Join(r.cfg.StateDir, HistoryFile), 0o700); err != nil { // unwritable
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background())
	if !errors.Is(err, ErrUnrecorded) || ExitStatus(err) != ExitUnrecorded || rep.Outcome != OutcomeOK {
		t.Fatalf("a rebuild whose history cannot be written: %v (exit %d)\n%s", err, ExitStatus(err), rep.Text())
	}
	if !strings.Contains(err.Error(), HistoryFile) || len(w.delivered) != 1 ||
		!strings.Contains(w.delivered[0].Body, "this run is not in the history") {
		t.Errorf("the error or the delivered report does not say the history was not written: %v\n%v", err, w.delivered)
	}

	w.failSchema = func() error { return errInjected }
	_, err = r.Run(context.Background())
	if !errors.Is(err, errInjected) || ExitStatus(err) != ExitFailed || !strings.Contains(err.Error(), "history not written") {
		t.Errorf("a failed rebuild whose history cannot be written: %v (exit %d)", err, ExitStatus(err))
	}
}
