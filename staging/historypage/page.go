package historypage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/restage/restage/internal/atomicfile"
	"github.com/restage/restage/staging"
)

// Options shape what Render shows; each zero value is the documented default.
type Options struct {
	// Title heads the page; "": "<environment> history", the environment named by the
	// newest report.
	Title string
	// Runs is how many of the newest runs the table and the plots show; 0: 60.
	Runs int
	// Slowest is how many migrations the slowest-migrations plot shows; 0: 12.
	Slowest int
	// Location is the time zone dates are shown in; nil: time.Local.
	Location *time.Location
	// Now is the clock that stamps the page; nil: time.Now.
	Now func() time.Time
}

// Defaults of Options.
const (
	DefaultRuns    = 60
	DefaultSlowest = 12
)

func (o Options) withDefaults() Options {
	if o.Runs <= 0 {
		o.Runs = DefaultRuns
	}
	if o.Slowest <= 0 {
		o.Slowest = DefaultSlowest
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Render writes the page of reports (a history, oldest first, as staging.History
// returns it) to w: one self-contained HTML document. An empty history is a page that
// says so.
func Render(w io.Writer, reports []*staging.Report, opts Options) error {
	return render(w, reports, opts.withDefaults(), nil)
}

// Config wires a Page. Options zero values are documented defaults.
type Config struct {
	// StateDir is the environment's state folder (state_dir), whose history the page
	// shows. Required.
	StateDir string
	Options
	// Logger receives a line for each history that cannot be read whole and each
	// request that fails; nil: slog.Default().
	Logger *slog.Logger
}

// Page is the history page of one state folder; it reads the history each time it is
// rendered, so a served page is as new as the last run. Create it with New.
type Page struct {
	cfg Config
	log *slog.Logger
}

// New checks cfg and returns its Page. A missing StateDir is an error wrapping
// staging.ErrConfig.
func New(cfg Config) (*Page, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("%w: historypage: Config.StateDir is required (the environment's state_dir)", staging.ErrConfig)
	}
	cfg.Options = cfg.Options.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Page{cfg: cfg, log: log}, nil
}

// Render reads the history and writes the page to w. A state folder without a history
// yet is an empty history; a history that can be read only in part is shown as far as
// it could be read, with a warning on the page and in the log.
func (p *Page) Render(w io.Writer) error {
	reports, err := staging.History(p.cfg.StateDir)
	var warnings []string
	switch {
	case errors.Is(err, fs.ErrNotExist):
		reports = nil
	case errors.Is(err, staging.ErrHistoryCorrupt):
		// Unreadable lines are skipped: the page shows every run that could be read.
		warnings = append(warnings, fmt.Sprintf("Some lines of the history could not be read and are left out (%v); the page shows the %d runs that could.", err, len(reports)))
		p.log.Warn("history read in part", "state_dir", p.cfg.StateDir, "runs", len(reports), "error", err)
	case err != nil:
		return fmt.Errorf("historypage: read the history of %s: %w", p.cfg.StateDir, err)
	}
	return render(w, reports, p.cfg.Options, warnings)
}

// WriteFile renders the page into the file path, atomically (a reader sees the old
// page or the new one), mode 0644.
func (p *Page) WriteFile(path string) error {
	var b bytes.Buffer
	if err := p.Render(&b); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b.Bytes(), 0o644)
}

// ServeHTTP serves the page, rendered anew for each GET or HEAD of "/" or
// "/index.html"; other paths are 404 and other methods 405.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" && r.URL.Path != "/index.html" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var b bytes.Buffer
	if err := p.Render(&b); err != nil {
		p.log.Error("history page not rendered", "error", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// The page loads nothing: say so, so that a browser refuses anything else.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b.Bytes())
}

// Serve serves the page on l until ctx ends, then shuts the server down (waiting up to
// 5 s for requests in flight) and returns nil; any other end of the server is its error.
func (p *Page) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
