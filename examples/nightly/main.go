// Command nightly rebuilds a staging environment from the newest production backup.
//
//	nightly -config FILE [-dry-run]   rebuild the environment FILE describes
//	nightly -demo [-keep]             a whole rebuild on throwaway local servers
//
// Exit status: 0 rebuilt; 1 failed (staging left or put back as it was, report
// delivered or spooled); 2 usage or config error; 3 another rebuild holds the lock.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/restage/restage/dbrestore"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

// usageError marks command-line mistakes (exit 2).
type usageError struct{ error }

func main() {
	if len(os.Args) > 1 && os.Args[1] == stagingtest.AppCommand {
		// The demo's code tree runs a copy of this program as its web app.
		if err := stagingtest.ServeApp(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "demo-app:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "nightly:", err)
	}
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var ue usageError
	if errors.Is(err, flag.ErrHelp) || errors.As(err, &ue) {
		return staging.ExitUsage
	}
	return staging.ExitStatus(err)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nightly", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "the environment's TOML config `file`")
	dryRun := fs.Bool("dry-run", false, "say which backup, release and migrations a rebuild would use; change nothing")
	demo := fs.Bool("demo", false, "run a whole rebuild on throwaway local servers")
	keep := fs.Bool("keep", false, "with -demo: keep the demo's folder")
	verbose := fs.Bool("v", false, "debug logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	switch {
	case *demo:
		return runDemo(ctx, *keep, stdout, stderr, log)
	case *config == "":
		fs.Usage()
		return usageError{errors.New("-config FILE or -demo is required")}
	}
	cfg, err := staging.LoadEnvironment(*config)
	if err != nil {
		return err
	}
	if err := cfg.RequireBackups(); err != nil {
		return err
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Progress: progress(stderr)})
	if err != nil {
		return err
	}
	defer rb.Close()
	var rep *staging.Report
	if *dryRun {
		rep, err = rb.Plan(ctx)
	} else {
		rep, err = rb.Run(ctx)
	}
	if rep != nil {
		fmt.Fprint(stdout, rep.Text())
	}
	return err
}

// progress returns a restore progress bar when stderr is a terminal, nil otherwise
// (the log then has one line per step).
func progress(stderr io.Writer) func(dbrestore.Progress) {
	f, ok := stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(p dbrestore.Progress) {
		if bar == nil {
			bar = progressbar.NewOptions(p.Total, progressbar.OptionSetWriter(stderr),
				progressbar.OptionSetDescription("restore"), progressbar.OptionShowCount(),
				progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(p.Done)
	}
}

func runDemo(ctx context.Context, keep bool, stdout, stderr io.Writer, log *slog.Logger) error {
	start := time.Now()
	dir, err := os.MkdirTemp("", "restage-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Fprintf(stdout, "demo folder: %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "== setting up: production and staging PostgreSQL, bug tracker data, a backup, a code tree, an SMTP server")
	w, err := stagingtest.NewWorld(ctx, stagingtest.Options{Dir: dir, App: []string{exe, stagingtest.AppCommand}, Logger: log})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer w.Close()
	fmt.Fprintf(stdout, "   production %s (system_identifier differs from staging's), %d-patch schema, config %s\n",
		w.ProdDB, stagingtest.ProductionPatch, w.ConfigPath)

	cfg, err := staging.LoadEnvironment(w.ConfigPath)
	if err != nil {
		return err
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Progress: progress(stderr)})
	if err != nil {
		return err
	}
	defer rb.Close()
	fmt.Fprintln(stdout, "== rebuilding staging (strategy swap)")
	rep, runErr := rb.Run(ctx)
	if rep != nil {
		fmt.Fprintf(stdout, "\n== the report\n%s\n", rep.Text())
	}
	fmt.Fprintln(stdout, "== the staging service")
	for _, path := range []string{"/+health", "/robots.txt", "/"} {
		fmt.Fprintf(stdout, "GET %s\n%s\n", path, indent(get(ctx, w.AppURL+path)))
	}
	fmt.Fprintf(stdout, "== mail received by the SMTP server at %s\n", w.Mail.Addr)
	for _, m := range w.Mail.Mails() {
		fmt.Fprintf(stdout, "from %s to %s:\n%s\n", m.From, strings.Join(m.To, ", "), indent(headersAndBody(string(m.Data))))
	}
	fmt.Fprintf(stdout, "== demo finished in %s\n", time.Since(start).Round(100*time.Millisecond))
	return runErr
}

func get(ctx context.Context, url string) string {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.Status + "\n" + string(body)
}

// headersAndBody shows a mail's interesting headers and its decoded text part (not the
// attached log).
func headersAndBody(raw string) string {
	m, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		return raw
	}
	var b strings.Builder
	for _, k := range []string{"From", "To", "Subject", "Keywords", "X-Restage-Status"} {
		if v := m.Header.Get(k); v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || params["boundary"] == "" {
		body, _ := io.ReadAll(m.Body)
		return b.String() + string(body)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for {
		p, err := mr.NextPart() // decodes quoted-printable
		if err != nil {
			break
		}
		if name := p.FileName(); name != "" {
			fmt.Fprintf(&b, "[attachment %s]\n", name)
			continue
		}
		text, _ := io.ReadAll(p)
		b.Write(text)
		b.WriteString("\n")
	}
	return b.String()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}
