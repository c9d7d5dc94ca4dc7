// Command demo runs a whole staging rebuild on throwaway local resources: a production
// and a staging PostgreSQL server, a bug tracker database at patch 3 with a backup of
// it, a code tree whose migrations go to patch 5 and which holds a small web app (this
// program, run as "demo demo-app ..."), and an SMTP server. It prints the rebuild's
// report, what the staging service answers and the mail received, then tears
// everything down. Its staging config masks the people's names and e-mail addresses
// while they load (stagingtest.MaskSection, with a random key in $RESTAGE_MASK_KEY
// unless it is set), and it prints one person as production has it and as staging does.
//
//	demo [-keep] [-v] [-strategy swap|physical] [-train]
//
// -train shows the weekly release train on the same kind of world instead (see train.go).
// -keep keeps the demo's folder; -v logs at debug level. -strategy physical makes
// production a cluster archiving into a pgBackRest repository (pgbackrest must be
// installed) and rebuilds staging physically: restore into a slot, neutralize, mask with
// SQL, migrate, switch clusters. Without local PostgreSQL server
// binaries it uses containers (see staging/stagingtest). It links the test harness, so
// it is not one of the binaries to install on a staging host; `nightly -demo` runs it.
//
// Exit status: 0 rebuilt; 1 the rebuild (or setting up the world) failed; 2 usage error.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/restage/restage/examples/internal/cli"
	"github.com/restage/restage/examples/internal/progressview"
	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/stagingtest"
)

func main() { cli.Main("demo", run, staging.ExitStatus) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == stagingtest.AppCommand {
		// The demo's code tree runs a copy of this program as its web app.
		return stagingtest.ServeApp(ctx, args[1:])
	}
	fs := cli.NewFlagSet("demo", stderr, "[-keep] [-v] [-strategy swap|physical] [-train]")
	keep := fs.Bool("keep", false, "keep the demo's folder (servers stopped, files left)")
	verbose := fs.Bool("v", false, "debug logging")
	strategy := fs.String("strategy", "swap", "swap, or physical (from a pgBackRest backup; needs pgbackrest)")
	trainMode := fs.Bool("train", false, "show the weekly release train instead: promote, cut, rebuild, promote, status")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *strategy != "swap" && *strategy != "physical" {
		return fs.Usagef("-strategy: want swap or physical")
	}
	if *trainMode && *strategy != "swap" {
		return fs.Usagef("-train shows the release train with swap rebuilds; -strategy %s goes without it", *strategy)
	}
	log := cli.Logger(stderr, *verbose)
	if *trainMode {
		return demoTrain(ctx, *keep, stdout, log)
	}
	return demo(ctx, *keep, *strategy == "physical", stdout, stderr, log)
}

func demo(ctx context.Context, keep, physical bool, stdout, stderr io.Writer, log *slog.Logger) error {
	start := time.Now()
	fmt.Fprintln(stdout, "== setting up: production and staging PostgreSQL, bug tracker data, a backup, a code tree, an SMTP server")
	if os.Getenv(stagingtest.MaskKeyEnv) == "" {
		key := make([]byte, 24)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		if err := os.Setenv(stagingtest.MaskKeyEnv, hex.EncodeToString(key)); err != nil {
			return err
		}
	}
	w, done, err := newWorld(ctx, "restage-demo-", keep, stdout, stagingtest.Options{Mask: true, Physical: physical, Logger: log})
	if err != nil {
		return err
	}
	defer done()
	fmt.Fprintf(stdout, "   production %s (system_identifier differs from staging's), %d-patch schema, config %s\n",
		w.ProdDB, stagingtest.ProductionPatch, w.ConfigPath)

	cfg, err := staging.LoadEnvironment(w.ConfigPath)
	if err != nil {
		return err
	}
	rb, err := staging.Open(cfg, staging.OpenOptions{Logger: log, Observer: progressview.New(stderr, log, 0)})
	if err != nil {
		return err
	}
	defer rb.Close()
	fmt.Fprintf(stdout, "== rebuilding staging (strategy %s)\n", cfg.Database.Strategy)
	rep, runErr := rb.Run(ctx)
	if rep != nil {
		fmt.Fprintf(stdout, "\n== the report\n%s\n", rep.Text())
	}
	how := "masked while restoring"
	if physical {
		how = "masked with SQL on the restored cluster before the cutover"
	}
	fmt.Fprintf(stdout, "== one person, in production and on staging (%s)\n", how)
	const person = "SELECT id || ' | ' || name || ' | ' || email FROM person WHERE id = 7"
	fmt.Fprintf(stdout, "   production: %s\n   staging:    %s\n\n", row(ctx, w.Production.DSN(w.ProdDB), person),
		row(ctx, w.Staging.DSN(w.StagingDB), person))
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

// newWorld builds a world in a new folder named prefix*, with a copy of this program as
// its web app. done closes the world and removes the folder, unless keep: then the
// folder's name is printed and the folder left.
func newWorld(ctx context.Context, prefix string, keep bool, stdout io.Writer, opts stagingtest.Options) (w *stagingtest.World, done func(), err error) {
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, nil, err
	}
	remove := func() { _ = os.RemoveAll(dir) }
	if keep {
		fmt.Fprintf(stdout, "demo folder: %s (kept)\n", dir)
		remove = func() {}
	}
	exe, err := os.Executable()
	if err == nil {
		opts.Dir, opts.App = dir, []string{exe, stagingtest.AppCommand}
		w, err = stagingtest.NewWorld(ctx, opts)
	}
	if err != nil {
		remove()
		return nil, nil, fmt.Errorf("setting up: %w", err)
	}
	return w, func() { w.Close(); remove() }, nil
}

// row returns the one text value sql selects in the database at dsn, or the error.
func row(ctx context.Context, dsn, sql string) string {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err.Error()
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		return err.Error()
	}
	return s
}

// get returns the status and the start of the body of a GET of url, or the error.
func get(ctx context.Context, url string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
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
