package physical

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// mode is how a slot is started.
type mode int

const (
	side  mode = iota // the side port, no TCP, no logical replication workers
	live              // the live port
	fresh             // as side, and without the libraries in heldBack: a restored copy's first start
)

// heldBack are the preloaded libraries whose background workers act as soon as a server
// starts: pg_cron runs production's scheduled jobs (a job connects to its nodename and
// nodeport, production's own by default), pglogical's subscriptions connect to their
// provider and consume its slot. A restored copy starts without them until Neutralize
// has disabled what they would run.
var heldBack = []string{"pg_cron", "pglogical"}

// pgctl runs pg_ctl as the owner with args.
func (c *Clusters) pgctl(ctx context.Context, args ...string) error {
	_, err := c.owner.run(ctx, append([]string{c.pgCtl}, args...))
	return err
}

// Running reports whether a server runs from the slot's data directory (pg_ctl status).
func (c *Clusters) Running(ctx context.Context, s *Slot) (bool, error) {
	if _, err := os.Stat(filepath.Join(s.Data, "PG_VERSION")); err != nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := c.pgctl(ctx, "status", "-D", s.Data)
	var ce *CommandError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ce) && (ce.ExitCode == 3 || ce.ExitCode == 4):
		return false, nil
	default:
		return false, fmt.Errorf("physical: %w", err)
	}
}

func (c *Clusters) secs() string { return strconv.Itoa(int(c.cfg.Timeout / time.Second)) }

// stop stops the slot's server (fast shutdown), checking the marker first.
func (c *Clusters) stop(ctx context.Context, s *Slot) error {
	if err := c.ours(s); err != nil {
		return err
	}
	up, err := c.Running(ctx, s)
	if err != nil || !up {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout+10*time.Second)
	defer cancel()
	start := time.Now()
	if err := c.pgctl(ctx, "stop", "-D", s.Data, "-m", "fast", "-W", "-s"); err != nil {
		return fmt.Errorf("physical: stop %s: %w", s, err)
	}
	if err := awaitExit(ctx, s.Data); err != nil {
		return fmt.Errorf("physical: stop %s: %w", s, err)
	}
	c.log.Info("cluster stopped", "slot", s.Name, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// awaitExit waits, within ctx, until the server of the data directory data has exited:
// its postmaster.pid is gone. pg_ctl stop -w waits the same way but looks every 100ms,
// and a cutover stops two servers while the service is down; this looks every 5ms.
func awaitExit(ctx context.Context, data string) error {
	for {
		switch pid, state := postmaster(data); state {
		case pidFileGone:
			return nil
		case serverDead:
			return fmt.Errorf("its server (pid %d) exited and left %s behind", pid, filepath.Join(data, "postmaster.pid"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the server is still running: %w", context.Cause(ctx))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// A postmasterState is what a data directory's postmaster.pid says of its server.
type postmasterState int

const (
	serverRunning postmasterState = iota // the file names a live process (or cannot be read yet)
	pidFileGone                          // no postmaster.pid: the server has stopped
	serverDead                           // the file names a process that has exited
)

// postmaster reads data's postmaster.pid and whether the server it names runs.
func postmaster(data string) (pid int, state postmasterState) {
	lines, err := postmasterPid(data)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, pidFileGone
	}
	if err != nil {
		return 0, serverRunning
	}
	if pid, err = strconv.Atoi(lines[0]); err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return pid, serverRunning
	}
	// A server that exits removes the file last: look again before calling it dead.
	if _, err := postmasterPid(data); errors.Is(err, fs.ErrNotExist) {
		return pid, pidFileGone
	}
	return pid, serverDead
}

// Stop stops the slot's server, when it runs.
func (c *Clusters) Stop(ctx context.Context, s *Slot) error { return c.stop(ctx, s) }

// start starts the slot on the live port.
func (c *Clusters) start(ctx context.Context, s *Slot) error { return c.startAs(ctx, s, live) }

// startAs writes the slot's settings for m and starts it, checking the marker first; it
// returns once the server accepts connections, out of recovery, from the slot's data
// directory.
func (c *Clusters) startAs(ctx context.Context, s *Slot, m mode) error {
	if err := c.ours(s); err != nil {
		return err
	}
	pinned, err := c.configure(s, m)
	if err != nil {
		return fmt.Errorf("physical: configure %s: %w", s, err)
	}
	if m == fresh {
		libs, err := c.preload(ctx, s)
		if err != nil {
			return err
		}
		if kept := slices.DeleteFunc(slices.Clone(libs), isHeldBack); len(kept) < len(libs) {
			pinned = append(pinned, [2]string{"shared_preload_libraries", strings.Join(kept, ",")})
		}
	}
	port := c.cfg.Port
	if m != live {
		port = c.cfg.SidePort
	}
	if err := c.portFree(port, s); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.Timeout+10*time.Second,
		fmt.Errorf("%w: start of %s timed out after %s (cluster timeout)", context.DeadlineExceeded, s, c.cfg.Timeout))
	defer cancel()
	start := time.Now()
	logFile := filepath.Join(s.Dir, "server.log")
	// pg_ctl start -w looks for the server every 100ms, and a cutover waits for this start
	// with the service down: restage looks itself, every 10ms (awaitPrimary), and goes on
	// as soon as the server is up and out of recovery, leaving pg_ctl to return on its
	// own. pg_ctl's failure (the server did not come up) ends the wait.
	started := make(chan error, 1)
	go func() {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.Timeout+10*time.Second)
		defer cancel()
		started <- c.pgctl(pctx, "start", "-D", s.Data, "-l", logFile, "-o", commandLine(pinned), "-w", "-t", c.secs(), "-s")
	}()
	if err := c.awaitPrimary(ctx, s, port, started); err != nil {
		return fmt.Errorf("%w%s", err, logTail(logFile))
	}
	c.log.Info("cluster started", "slot", s.Name, "port", port, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// preload returns the shared_preload_libraries the slot's configuration files name
// (`postgres -C`, as the clusters' owner; the slot must have a postgresql.conf).
func (c *Clusters) preload(ctx context.Context, s *Slot) ([]string, error) {
	out, err := c.owner.run(ctx, []string{filepath.Join(filepath.Dir(c.pgCtl), "postgres"), "-D", s.Data,
		"-c", "data_directory=" + s.Data, "-C", "shared_preload_libraries"})
	if err != nil {
		return nil, fmt.Errorf("physical: the restored cluster's shared_preload_libraries: %w", err)
	}
	var libs []string
	for _, l := range strings.Split(string(out), ",") {
		if l = strings.TrimSpace(l); l != "" {
			libs = append(libs, l)
		}
	}
	return libs, nil
}

// libName is the library an entry of shared_preload_libraries names: "pg_cron" for
// pg_cron, "$libdir/pg_cron.so", quoted or not.
func libName(entry string) string {
	return strings.TrimSuffix(filepath.Base(strings.Trim(entry, `"`)), ".so")
}

// isHeldBack reports whether the entry of shared_preload_libraries is one of heldBack.
func isHeldBack(entry string) bool { return slices.Contains(heldBack, libName(entry)) }

// logTail returns the last lines of the server log, for an error.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 8 {
		lines = lines[len(lines)-8:]
	}
	return "; server log: " + strings.Join(lines, "\n")
}

// portFree refuses to start a slot on a port some other server answers on (through
// TCP on the loopback or the slot's own socket): production may run on this host.
func (c *Clusters) portFree(port int, s *Slot) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("%w: something already listens on 127.0.0.1:%d; restage starts %s only on a free port", ErrProduction, port, s)
	}
	return nil
}

// awaitPrimary's last word while the server is not ready yet, or still in recovery.
var (
	errNotReady   = errors.New("not accepting connections yet")
	errRecovering = errors.New("still in recovery")
)

// acceptsConnections reports whether the server of the data directory data says, in
// its postmaster.pid, that it accepts connections ("ready", or "standby" during
// recovery), as pg_ctl start -w reads it.
func acceptsConnections(data string) bool {
	lines, err := postmasterPid(data)
	if err != nil || len(lines) < 8 {
		return false
	}
	return lines[7] == "ready" || lines[7] == "standby"
}

// postmasterPid returns the lines of the data directory's postmaster.pid, trimmed (the
// first is the server's pid, the eighth its status).
func postmasterPid(data string) ([]string, error) {
	b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(b), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return lines, nil
}

// awaitPrimary waits, within ctx, until the slot's server has finished recovery, then
// checks it runs from the slot's data directory. It asks every 10ms on one connection
// (each new one costs a server process and its start); a failed connection is retried
// after 10ms, doubling to 100ms. An error from started (pg_ctl start) ends the wait.
func (c *Clusters) awaitPrimary(ctx context.Context, s *Slot, port int, started <-chan error) error {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.WithoutCancel(ctx))
		}
	}()
	retry := 10 * time.Millisecond
	for {
		pause := 10 * time.Millisecond
		err := func() error {
			if conn == nil {
				// Connect once the server says it accepts connections: an attempt before
				// that adds a FATAL line to its log, which may hide why a start failed.
				if !acceptsConnections(s.Data) {
					return errNotReady
				}
				nc, err := c.connectPort(ctx, s, port, "postgres")
				if err == nil {
					err = c.guard(ctx, nc, s)
					if err != nil {
						nc.Close(context.WithoutCancel(ctx))
					}
				}
				if err != nil {
					pause, retry = retry, min(2*retry, 100*time.Millisecond)
					return err
				}
				conn = nc
			}
			var rec bool
			if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
				conn.Close(context.WithoutCancel(ctx))
				conn = nil
				return err
			}
			if rec {
				return errRecovering
			}
			return nil
		}()
		if err == nil || errors.Is(err, ErrGuard) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("physical: %s did not finish recovery: %w (last: %v)", s, context.Cause(ctx), err)
		case serr := <-started:
			if serr != nil {
				return fmt.Errorf("physical: start %s: %w", s, serr)
			}
			started = nil // up: pg_ctl is done, the wait goes on
		case <-time.After(pause):
		}
		// Once pg_ctl has seen it start, a server that has gone will not come back.
		if started == nil {
			if pid, state := postmaster(s.Data); state != serverRunning {
				return fmt.Errorf("physical: the server of %s (pid %d) exited before the end of its recovery (last: %v)", s, pid, err)
			}
		}
	}
}

// configure writes the slot's settings for m: restage's own block at the end of
// postgresql.auto.conf (read last, so it wins over production's files, and kept by a
// reboot), a postgresql.conf when the backup had none (Debian keeps it in /etc), and
// restage's lines at the top of pg_hba.conf and pg_ident.conf.
func (c *Clusters) configure(s *Slot, m mode) (pinned [][2]string, err error) {
	// A copy of a standby would start as one and never promote: it recovers once, as a
	// primary of its own (recovery.signal, which a restore writes, is kept).
	if err := os.Remove(filepath.Join(s.Data, "standby.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	conf := filepath.Join(s.Data, "postgresql.conf")
	if _, err := os.Stat(conf); errors.Is(err, os.ErrNotExist) {
		if err := c.writeOwned(conf, "# written by restage: the backup had no postgresql.conf\n"); err != nil {
			return nil, err
		}
	} else if err := c.dropCredentials(conf, s.Data); err != nil {
		return nil, err
	}
	set, pinned := c.settings(s, m)
	drop := slices.Clone(controlled)
	if m != live {
		// pgBackRest's recovery settings stay until the first start has promoted.
		drop = slices.DeleteFunc(drop, func(k string) bool {
			return k == "restore_command" || strings.HasPrefix(k, "recovery_")
		})
	}
	for _, kv := range set {
		drop = append(drop, kv[0])
	}
	if err := c.rewriteAuto(filepath.Join(s.Data, "postgresql.auto.conf"), set, drop); err != nil {
		return nil, err
	}
	if err := c.prepend(filepath.Join(s.Data, "pg_hba.conf"), c.hbaLines(),
		"host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n"); err != nil {
		return nil, err
	}
	return pinned, c.prepend(filepath.Join(s.Data, "pg_ident.conf"), c.identLines(), "")
}

// settings returns what the slot runs with in mode m: set, restage's settings and the
// configured ones, for postgresql.auto.conf; pinned, restage's own, which also go on the
// server's command line.
func (c *Clusters) settings(s *Slot, m mode) (set, pinned [][2]string) {
	set = [][2]string{
		{"hba_file", filepath.Join(s.Data, "pg_hba.conf")},
		{"ident_file", filepath.Join(s.Data, "pg_ident.conf")},
		{"unix_socket_directories", s.Dir},
		{"archive_mode", "off"},
		{"archive_command", ""},
		{"primary_conninfo", ""},
		{"primary_slot_name", ""},
		{"external_pid_file", ""},
		// Commands the backup's configuration may name that run on staging: the end of
		// its recovery (production's could clean up a WAL archive it shares) and a
		// standby's archive cleanup.
		{"recovery_end_command", ""},
		{"archive_cleanup_command", ""},
	}
	listen := "localhost"
	if v, ok := c.cfg.Settings["listen_addresses"]; ok {
		listen = v
	}
	if m != live {
		// WAL that a checkpoint no longer needs is removed, not renamed for reuse with
		// its contents (DropWAL): it holds production's rows as they were before the
		// masking and the post-restore SQL changed them.
		set = append(set, [2]string{"port", strconv.Itoa(c.cfg.SidePort)}, [2]string{"listen_addresses", ""},
			[2]string{"max_logical_replication_workers", "0"}, [2]string{"wal_recycle", "off"}, [2]string{"wal_keep_size", "0"})
	} else {
		set = append(set, [2]string{"port", strconv.Itoa(c.cfg.Port)}, [2]string{"listen_addresses", listen})
	}
	// restage's own settings go on the server's command line too, which outranks every
	// configuration file and what they include: nothing in the backup's files, or in
	// files they include, can turn archiving on, make the server follow production, or
	// move it onto another data directory, port or socket.
	pinned = append(slices.Clone(set), [2]string{"data_directory", s.Data})
	for _, k := range slices.Sorted(mapKeys(c.cfg.Settings)) {
		if k != "listen_addresses" {
			set = append(set, [2]string{k, c.cfg.Settings[k]})
		}
	}
	return set, pinned
}

// rewriteAuto rewrites postgresql.auto.conf at path without the settings named in drop
// and without restage's earlier block, then appends restage's block with set: read
// last, it wins over production's files, and a reboot keeps it.
func (c *Clusters) rewriteAuto(path string, set [][2]string, drop []string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var b strings.Builder
	for _, line := range strings.Split(string(old), "\n") {
		k, _, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if (ok && slices.Contains(drop, k)) || strings.HasPrefix(line, "# restage") || line == "" {
			continue
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("# restage: the settings below are rewritten at every start by restage\n")
	for _, kv := range set {
		fmt.Fprintf(&b, "%s = '%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", "''"))
	}
	return c.writeOwned(path, b.String())
}

// credentialKeys are the settings of a backup's postgresql.conf that may hold
// production's credentials (a replication password, a cloud key in a command line);
// restage sets each itself, and the server never uses the file's.
var credentialKeys = []string{"primary_conninfo", "archive_command", "archive_cleanup_command",
	"recovery_end_command", "restore_command"}

// dropCredentials removes from the configuration file conf the lines that set one of
// credentialKeys, so that their values (production's) are not on staging's disk, nor in
// pg_file_settings for a staging superuser to read; and so from every file conf includes
// (include, include_if_exists, include_dir, at any depth PostgreSQL allows) that the
// backup brought, inside the data directory data.
func (c *Clusters) dropCredentials(conf, data string) error {
	return c.dropCredentialsIn(conf, data, 0)
}

// maxIncludeDepth is PostgreSQL's bound on nested configuration files.
const maxIncludeDepth = 10

func (c *Clusters) dropCredentialsIn(conf, data string, depth int) error {
	old, err := os.ReadFile(conf)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(old), "\n")
	var included []string
	kept := slices.DeleteFunc(slices.Clone(lines), func(line string) bool {
		k := strings.TrimSpace(line)
		rest := ""
		if i := strings.IndexAny(k, " \t="); i >= 0 {
			k, rest = k[:i], k[i:]
		}
		k = strings.ToLower(k)
		if k == "include" || k == "include_if_exists" || k == "include_dir" {
			if p, ok := includedPath(rest, filepath.Dir(conf)); ok {
				included = append(included, k+"\x00"+p)
			}
		}
		return slices.Contains(credentialKeys, k)
	})
	if len(kept) != len(lines) {
		if err := c.writeOwned(conf, strings.Join(kept, "")); err != nil {
			return err
		}
	}
	if depth >= maxIncludeDepth {
		return nil
	}
	for _, inc := range included {
		kind, p, _ := strings.Cut(inc, "\x00")
		if rel, err := filepath.Rel(data, p); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue // not the backup's: staging's own file, or none
		}
		files := []string{p}
		if kind == "include_dir" {
			entries, err := os.ReadDir(p)
			if err != nil {
				continue
			}
			files = files[:0]
			for _, e := range entries {
				if n := e.Name(); e.Type().IsRegular() && strings.HasSuffix(n, ".conf") && !strings.HasPrefix(n, ".") {
					files = append(files, filepath.Join(p, n))
				}
			}
		}
		for _, f := range files {
			if fi, err := os.Lstat(f); err != nil || !fi.Mode().IsRegular() {
				continue
			}
			if err := c.dropCredentialsIn(f, data, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// includedPath returns the path an include directive's value (after its name: "=
// 'file'", " 'file' # comment") names, relative to dir when not absolute.
func includedPath(value, dir string) (string, bool) {
	v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(value), "="))
	if !strings.HasPrefix(v, "'") {
		return "", false
	}
	end := strings.Index(v[1:], "'")
	if end < 1 {
		return "", false
	}
	p := v[1 : 1+end]
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	return filepath.Clean(p), true
}

// commandLine is pg_ctl's -o for settings: "-c 'name=value'" each, quoted for the
// shell pg_ctl runs the server through.
func commandLine(settings [][2]string) string {
	var b strings.Builder
	for i, kv := range settings {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("-c '" + strings.ReplaceAll(kv[0]+"="+kv[1], "'", `'\''`) + "'")
	}
	return b.String()
}

// logins are the roles restage connects as through the slot's socket: the superuser,
// then ClustersConfig.Logins.
func (c *Clusters) logins() []string {
	return append([]string{Superuser}, slices.DeleteFunc(slices.Clone(c.cfg.Logins), func(r string) bool { return r == Superuser })...)
}

// hbaLines let restage (and only through the slot's own socket) connect as the
// superuser and its other logins: peer authentication, mapped by pg_ident.conf.
func (c *Clusters) hbaLines() string {
	var b strings.Builder
	b.WriteString("# restage: its own connections, through the slot's socket (written by restage)\n")
	for _, r := range c.logins() {
		fmt.Fprintf(&b, "local all %s peer map=restage\n", hbaQuote(r))
	}
	return b.String()
}

// identLines map restage's user and the clusters' owner onto the superuser and the
// other logins.
func (c *Clusters) identLines() string {
	var b strings.Builder
	b.WriteString("# restage: who may connect as the superuser through the slot's socket (written by restage)\n")
	names := []string{c.owner.name}
	if u, err := user.Current(); err == nil && u.Username != c.owner.name {
		names = append(names, u.Username)
	}
	for _, r := range c.logins() {
		for _, n := range names {
			fmt.Fprintf(&b, "restage %s %s\n", hbaQuote(n), hbaQuote(r))
		}
	}
	return b.String()
}

// hbaQuote quotes a name for pg_hba.conf and pg_ident.conf: always, so that no name
// reads as a keyword (all, sameuser) or a group (+name), a regular expression (/...)
// or two fields.
func hbaQuote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

// prepend puts lines at the top of path unless they are there; a missing file is
// created with lines and then rest.
func (c *Clusters) prepend(path, lines, rest string) error {
	old, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c.writeOwned(path, lines+rest)
	}
	if err != nil {
		return err
	}
	if strings.HasPrefix(string(old), lines) {
		return nil
	}
	return c.writeOwned(path, lines+string(old))
}

// writeOwned writes path (0600) for the clusters' owner.
func (c *Clusters) writeOwned(path, content string) error {
	tmp := path + ".restage"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	if err := c.owner.chown(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// DSN returns the connection string of database on the slot while it runs on port:
// its socket, as the superuser.
func (c *Clusters) dsn(s *Slot, port int, database string) string {
	return c.dsnAs(s, port, database, Superuser)
}

func (c *Clusters) dsnAs(s *Slot, port int, database, role string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", quoteKV(s.Dir), port, quoteKV(role), quoteKV(database))
}

// CanLogIn reports whether restage may log in as role through a slot's socket: the
// superuser, or one of ClustersConfig.Logins.
func (c *Clusters) CanLogIn(role string) bool { return slices.Contains(c.logins(), role) }

// SideDSNAs is SideDSN logged in as role, one of ClustersConfig.Logins: its session
// has the role's rights only (no SET ROLE NONE back to a superuser).
func (c *Clusters) SideDSNAs(s *Slot, database, role string) string {
	return c.dsnAs(s, c.cfg.SidePort, database, role)
}

// SideDSN returns the connection string of database on the slot running on the side
// port (for the post-restore SQL and the migrations).
func (c *Clusters) SideDSN(s *Slot, database string) string {
	return c.dsn(s, c.cfg.SidePort, database)
}

// LiveDSN returns the connection string of database on the live slot's socket.
func (c *Clusters) LiveDSN(s *Slot, database string) string { return c.dsn(s, c.cfg.Port, database) }

func quoteKV(v string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), "'", `\'`) + "'"
}

func (c *Clusters) connectPort(ctx context.Context, s *Slot, port int, database string) (*pgx.Conn, error) {
	return c.connectNotices(ctx, s, port, database, nil)
}

// connectNotices connects as connectPort does, passing the server's notices to
// onNotice (nil: they are dropped).
func (c *Clusters) connectNotices(ctx context.Context, s *Slot, port int, database string, onNotice pgconn.NoticeHandler) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(c.dsn(s, port, database))
	if err != nil {
		return nil, err
	}
	cfg.OnNotice = onNotice
	return pgx.ConnectConfig(cctx, cfg)
}

// guard refuses a connection to a server that does not run from the slot's data
// directory: a restored cluster has production's system_identifier, so restage tells
// its own clusters by where they run from.
func (c *Clusters) guard(ctx context.Context, conn *pgx.Conn, s *Slot) error {
	var dd string
	if err := conn.QueryRow(ctx, "SELECT current_setting('data_directory')").Scan(&dd); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	want, err := filepath.EvalSymlinks(s.Data)
	if err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	got, err := filepath.EvalSymlinks(dd)
	if err != nil || got != want {
		return fmt.Errorf("%w: the server reached runs from %s, not from %s", ErrGuard, dd, s.Data)
	}
	return nil
}

// Conn connects to database on the slot on the side or live port (live: the slot is
// live), after checking that the server runs from the slot's data directory.
func (c *Clusters) Conn(ctx context.Context, s *Slot, database string, onLive bool) (*pgx.Conn, error) {
	return c.conn(ctx, s, database, onLive, nil)
}

// conn is Conn, passing the server's notices to onNotice (nil: they are dropped).
func (c *Clusters) conn(ctx context.Context, s *Slot, database string, onLive bool, onNotice pgconn.NoticeHandler) (*pgx.Conn, error) {
	port := c.cfg.SidePort
	if onLive {
		port = c.cfg.Port
	}
	conn, err := c.connectNotices(ctx, s, port, database, onNotice)
	if err != nil {
		return nil, fmt.Errorf("physical: connect to %s on %s: %w", database, s, err)
	}
	if err := c.guard(ctx, conn, s); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return conn, nil
}
