// Package restorebar draws a restore's progress as a bar on a terminal, for the example
// binaries' staging.OpenOptions.Progress:
//
//	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Progress: restorebar.New(os.Stderr)})
package restorebar

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/restage/restage/dbrestore"
)

// New returns a progress function drawing a bar on w when w is a terminal, and nil
// otherwise (the log then has one line per step, and no control characters land in a
// file or a mail from cron).
func New(w io.Writer) func(dbrestore.Progress) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(p dbrestore.Progress) {
		if bar == nil {
			bar = progressbar.NewOptions(p.Total, progressbar.OptionSetWriter(w),
				progressbar.OptionSetDescription("restore"), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(p.Done)
	}
}
