package physical

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// PgBackRestConfig configures the pgBackRest source. restage runs only `pgbackrest info`
// and `pgbackrest restore`, with the stanza and pgBackRest's own config passed through:
// it never writes to the repository (a folder, or S3/GCS/Azure as that config says).
type PgBackRestConfig struct {
	Stanza string // required: the stanza of production's cluster
	// Config is pgBackRest's config file (--config); "": pgBackRest's default.
	Config string
	// Command is the pgbackrest program; "": "pgbackrest" on PATH.
	Command string
	// User runs pgbackrest; "": "postgres" when restage runs as root, else restage's user.
	User string
	// SyncOnce runs `pgbackrest restore` under eatmydata (Debian's package eatmydata), so
	// that it does not wait for the disk after each file it writes, and syncs the
	// restored folder's filesystem once when pgBackRest is done, before Restore returns:
	// the slot is as durable when restage marks it restored, without a disk round trip
	// per file (a cluster has 1,300 files before any data). A restore cut short is
	// discarded whole either way.
	SyncOnce bool
	// ProcessMax is how many files a restore writes at once: pgBackRest's process-max,
	// passed on the command line, over the config's; 0: runtime.NumCPU(). pgBackRest's
	// own default is 1, which leaves all but one of staging's cores idle (on 2 cores a
	// restore takes 1.5x as long).
	ProcessMax int
	// InfoTimeout bounds `pgbackrest info`; 0: 2m. A restore is bounded by its ctx.
	InfoTimeout time.Duration
	// Logger receives one line per command; nil: slog.Default().
	Logger *slog.Logger
}

// DefaultInfoTimeout bounds `pgbackrest info` when PgBackRestConfig.InfoTimeout is 0.
const DefaultInfoTimeout = 2 * time.Minute

// PgBackRest is the pgBackRest source.
type PgBackRest struct {
	cfg    PgBackRestConfig
	cmd    string
	nosync string // the eatmydata program, with SyncOnce
	owner  *owner
	log    *slog.Logger
}

var _ Source = (*PgBackRest)(nil)

// NewPgBackRest checks cfg and finds the program.
func NewPgBackRest(cfg PgBackRestConfig) (*PgBackRest, error) {
	if cfg.Stanza == "" {
		return nil, errors.New("physical: PgBackRestConfig.Stanza is required")
	}
	if strings.HasPrefix(cfg.Stanza, "-") || strings.ContainsAny(cfg.Stanza, " \t\n=") {
		return nil, fmt.Errorf("physical: stanza %q: not a stanza name", cfg.Stanza)
	}
	if cfg.InfoTimeout <= 0 {
		cfg.InfoTimeout = DefaultInfoTimeout
	}
	if cfg.ProcessMax < 0 {
		return nil, fmt.Errorf("physical: PgBackRestConfig.ProcessMax %d: want 1 or more (0: the CPU count)", cfg.ProcessMax)
	}
	if cfg.ProcessMax == 0 {
		cfg.ProcessMax = runtime.NumCPU()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cmd := cfg.Command
	if cmd == "" {
		cmd = "pgbackrest"
	}
	path, err := exec.LookPath(cmd)
	if err != nil {
		return nil, fmt.Errorf("physical: pgbackrest: %w (Debian's package pgbackrest)", err)
	}
	var nosync string
	if cfg.SyncOnce {
		if nosync, err = exec.LookPath("eatmydata"); err != nil {
			return nil, fmt.Errorf("physical: SyncOnce: %w (Debian's package eatmydata)", err)
		}
	}
	o, err := lookupOwner(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	return &PgBackRest{cfg: cfg, cmd: path, nosync: nosync, owner: o, log: cfg.Logger}, nil
}

// argv is pgbackrest with the passed-through options, then args, then the command.
func (p *PgBackRest) argv(command string, args ...string) []string {
	a := []string{p.cmd}
	if p.cfg.Config != "" {
		a = append(a, "--config="+p.cfg.Config)
	}
	a = append(a, "--stanza="+p.cfg.Stanza, "--log-level-console=warn")
	a = append(a, args...)
	return append(a, command)
}

// infoJSON is the part of `pgbackrest info --output=json` restage reads.
type infoJSON struct {
	Name   string `json:"name"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	DB []struct {
		ID       int    `json:"id"`
		SystemID uint64 `json:"system-id"`
		Version  string `json:"version"`
	} `json:"db"`
	Backup []struct {
		Label     string `json:"label"`
		Type      string `json:"type"`
		Error     *bool  `json:"error"`
		Timestamp struct {
			Start int64 `json:"start"`
			Stop  int64 `json:"stop"`
		} `json:"timestamp"`
		Info struct {
			Size       int64 `json:"size"`
			Repository struct {
				Size int64 `json:"size"`
			} `json:"repository"`
		} `json:"info"`
		Database struct {
			ID int `json:"id"`
		} `json:"database"`
	} `json:"backup"`
}

// pgBackRest's stanza status code for a stanza without a valid backup.
const statusNoBackup = 2

// Latest implements Source: the newest backup set of the stanza that pgBackRest does
// not flag with errors.
func (p *PgBackRest) Latest(ctx context.Context) (*BackupSet, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.InfoTimeout,
		fmt.Errorf("%w: pgbackrest info timed out after %s", context.DeadlineExceeded, p.cfg.InfoTimeout))
	defer cancel()
	out, err := p.owner.run(ctx, p.argv("info", "--output=json"))
	if err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	return parseInfo(out, p.cfg.Stanza)
}

// parseInfo picks the newest good backup set of stanza from pgbackrest info's JSON.
func parseInfo(out []byte, stanza string) (*BackupSet, error) {
	var stanzas []infoJSON
	if err := json.Unmarshal(out, &stanzas); err != nil {
		return nil, fmt.Errorf("%w: pgbackrest info: %w", ErrCorrupt, err)
	}
	for _, s := range stanzas {
		if s.Name != stanza {
			continue
		}
		switch s.Status.Code {
		case 0:
		case statusNoBackup:
			return nil, fmt.Errorf("%w: pgBackRest stanza %s: %s", ErrNoBackup, stanza, s.Status.Message)
		default:
			return nil, fmt.Errorf("%w: pgBackRest stanza %s: status %d: %s", ErrCorrupt, stanza, s.Status.Code, s.Status.Message)
		}
		for i := len(s.Backup) - 1; i >= 0; i-- {
			b := s.Backup[i]
			if b.Error != nil && *b.Error {
				continue // pgBackRest found page checksum errors in it
			}
			set := &BackupSet{Label: b.Label, Type: b.Type, Started: time.Unix(b.Timestamp.Start, 0),
				Stopped: time.Unix(b.Timestamp.Stop, 0), Size: b.Info.Size, RepoSize: b.Info.Repository.Size}
			for _, db := range s.DB {
				if db.ID == b.Database.ID {
					set.SystemIdentifier, set.Version = db.SystemID, db.Version
				}
			}
			if set.SystemIdentifier == 0 {
				return nil, fmt.Errorf("%w: pgBackRest backup %s names no system-id", ErrCorrupt, b.Label)
			}
			return set, nil
		}
		return nil, fmt.Errorf("%w: pgBackRest stanza %s has no backup without errors", ErrNoBackup, stanza)
	}
	return nil, fmt.Errorf("%w: pgBackRest knows no stanza %s", ErrNoBackup, stanza)
}

// Restore implements Source: `pgbackrest restore` of set into dir, to recover to the
// backup's consistent point and promote (--type=immediate --target-action=promote),
// with archive_mode off (--archive-mode=off), tablespaces beside dir instead of their
// production paths (the config's tablespace-map, link-map and link-all reset), and
// --delta when asked.
func (p *PgBackRest) Restore(ctx context.Context, set *BackupSet, dir string, opts RestoreOptions) error {
	if set == nil || set.Label == "" || !filepath.IsAbs(dir) {
		return errors.New("physical: Restore needs a backup set and an absolute folder")
	}
	tblspc := tablespaceDir(dir)
	if err := os.MkdirAll(tblspc, 0o700); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if err := p.owner.chown(tblspc); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	// The links a restore makes are restage's, whatever pgBackRest's config says: a
	// tablespace-map, link-map or link-all there would restore tablespaces or pg_wal onto
	// their production paths, which may be on this host.
	args := []string{"--pg1-path=" + dir, "--set=" + set.Label, "--type=immediate", "--target-action=promote",
		"--archive-mode=off", "--tablespace-map-all=" + tblspc, "--reset-tablespace-map", "--reset-link-map", "--no-link-all",
		"--process-max=" + strconv.Itoa(p.cfg.ProcessMax)}
	if opts.Delta {
		args = append(args, "--delta")
		if opts.ByTime {
			args = append(args, "--force") // with --delta: by size and time, not checksums
		}
	}
	start := time.Now()
	if !opts.Delta {
		defer watchSize(ctx, dir, set.Size, 250*time.Millisecond)()
	}
	argv := p.argv("restore", args...)
	if p.nosync != "" {
		argv = append([]string{p.nosync}, argv...)
	}
	if _, err := p.owner.run(ctx, argv); err != nil {
		return fmt.Errorf("physical: restore %s: %w", set.Label, err)
	}
	if p.nosync != "" {
		if err := syncFS(dir); err != nil {
			return fmt.Errorf("physical: restore %s: sync: %w", set.Label, err)
		}
	}
	p.log.Info("pgbackrest restore done", "set", set.Label, "dir", dir, "delta", opts.Delta, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// Verify implements Source: nothing to do before the restore, which checks every file
// against the checksum pgBackRest recorded for it (and Latest takes only a set that
// `pgbackrest info` reports without errors).
func (p *PgBackRest) Verify(context.Context, *BackupSet) error { return nil }

// Origin implements Source: pg1-host, pg1-port and pg1-path of the stanza in
// pgBackRest's config file (the stanza's section over [global]), when it can be read.
func (p *PgBackRest) Origin() Origin {
	files := []string{p.cfg.Config}
	if p.cfg.Config == "" {
		// pgBackRest's defaults: its config file, then the files of its include folder
		// (which it reads only when no --config is given).
		files = []string{"/etc/pgbackrest/pgbackrest.conf"}
		if _, err := os.Stat(files[0]); err != nil {
			files = []string{"/etc/pgbackrest.conf"}
		}
		more, _ := filepath.Glob("/etc/pgbackrest/conf.d/*.conf")
		files = append(files, more...)
	}
	vals := map[string]map[string]string{}
	for _, path := range files {
		if f, err := os.Open(path); err == nil {
			readIni(f, vals)
			f.Close()
		}
	}
	return originOf(vals, p.cfg.Stanza)
}

// readIni reads the sections and options of a pgBackRest config file into vals (a later
// file's value wins).
func readIni(f io.Reader, vals map[string]map[string]string) {
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if vals[section] == nil {
			vals[section] = map[string]string{}
		}
		vals[section][strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
}

// originOf returns the production cluster a stanza's options name: pg1-host, pg1-path
// and pg1-port, or their older names (db1-*, db-*), which pgBackRest still reads.
func originOf(vals map[string]map[string]string, stanza string) Origin {
	get := func(k string) string {
		names := []string{"pg1-" + k, "db1-" + k, "db-" + k}
		for _, s := range []string{stanza + ":restore", stanza, "global:restore", "global"} {
			for _, n := range names {
				if v, ok := vals[s][n]; ok {
					return v
				}
			}
		}
		return ""
	}
	o := Origin{Host: get("host"), Dir: get("path")}
	o.Port, _ = strconv.Atoi(get("port"))
	if o.Port == 0 {
		o.Port = 5432 // pgBackRest's default
	}
	return o
}
