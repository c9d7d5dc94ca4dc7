package stagingtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/dbrestore/physical/physicaltest"
	"github.com/restage/restage/internal/testutil"
)

// startPhysical starts production as a cluster archiving into a pgBackRest repository
// and points Staging at the live port of the clusters restage will make.
func (w *World) startPhysical(ctx context.Context) error {
	p, err := physicaltest.StartProduction(ctx, physicaltest.Options{})
	if err != nil {
		return fmt.Errorf("production cluster: %w", err)
	}
	w.Phys = p
	w.Production = &pgtest.Server{Host: "127.0.0.1", Port: p.Port, User: "postgres"}
	// Another of production's databases: the physical rebuild drops it.
	if err := w.exec(ctx, w.Production, "postgres", "CREATE DATABASE analytics"); err != nil {
		return err
	}
	parent, err := os.MkdirTemp("", "restage-e2e-pg-")
	if err != nil {
		return err
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		return err
	}
	w.ClusterDir = filepath.Join(parent, "pg")
	port, err := testutil.FreePort()
	if err != nil {
		return err
	}
	w.Staging = &pgtest.Server{Host: "127.0.0.1", Port: port, User: "postgres"}
	// The side port is a free one of its own (port+1, the default, may be another
	// server's).
	w.sidePort, err = testutil.FreePort()
	return err
}

// closePhysical stops staging's clusters and production's, and removes their folders.
func (w *World) closePhysical() {
	if w.ClusterDir != "" {
		for _, slot := range []string{"a", "b"} {
			data := filepath.Join(w.ClusterDir, slot, "data")
			if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
				_ = pgctlStop(data)
			}
		}
		_ = os.RemoveAll(filepath.Dir(w.ClusterDir))
	}
	if w.Phys != nil {
		_ = w.Phys.Stop()
	}
}

// pgctlStop stops the cluster of data immediately, as its owner.
func pgctlStop(data string) error {
	bin, err := pgtest.BinDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "pg_ctl"), "stop", "-D", data, "-m", "immediate", "-w", "-s")
	cmd.Dir = "/"
	if os.Geteuid() == 0 {
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		}
	}
	return cmd.Run()
}

// writePhysicalConfig writes staging.toml for strategy physical.
func (w *World) writePhysicalConfig(command []string, wait time.Duration, postRestore string) error {
	bin, err := pgtest.BinDir()
	if err != nil {
		return err
	}
	source := fmt.Sprintf("type     = \"pgbackrest\"\nstanza   = %q\nconfig   = %q\ndelta    = true", physicaltest.Stanza, w.Phys.Config)
	if w.opts.BaseBackup {
		source = fmt.Sprintf("type     = \"basebackup\"\ndir      = %q", backupsDir)
	}
	text := fmt.Sprintf(`# The demo's staging environment, rebuilt physically (made by stagingtest).
environment = "staging"
lock_file   = "run/staging.lock"
state_dir   = "state"

[backup]
%s
database = %q
wait     = %q
max_age  = "20h"
poll     = "1s"

[database]
name         = %q
strategy     = "physical"
%s
clones       = %s

[cluster]
dir       = %q
port      = %d
side_port = %d
bin_dir  = %q
settings = { fsync = "off", shared_buffers = "32MB" }
timeout  = "2m"
`, source, w.ProdDB, wait.String(), w.StagingDB, postRestore, tomlList(w.opts.Clones),
		w.ClusterDir, w.Staging.Port, w.sidePort, bin)
	return w.writeStagingConfig(text, command)
}

// StopLiveCluster stops the live staging cluster at once (as a crash or a reboot would),
// with Options.Physical.
func (w *World) StopLiveCluster() error {
	b, err := os.ReadFile(filepath.Join(w.ClusterDir, "live"))
	if err != nil {
		return err
	}
	return pgctlStop(filepath.Join(w.ClusterDir, strings.TrimSpace(string(b)), "data"))
}
