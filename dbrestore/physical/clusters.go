package physical

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restage/restage/internal/atomicfile"
)

// ClustersConfig configures the staging cluster restage manages ([cluster]).
type ClustersConfig struct {
	Environment string // required: written into every slot's marker
	// Dir holds the two slots ("a" and "b", each a folder with the marker, the data
	// directory "data", the server log and the socket) and the file "live" naming the
	// slot on the live port. Required; created 0700 for User.
	Dir string
	// Port is the live port the service connects to. Required.
	Port int
	// SidePort is the port a restored cluster runs on while it is prepared, with no TCP
	// listener (its socket is in its slot's folder only); 0: Port+1.
	SidePort int
	// BinDir holds pg_ctl; "": the newest /usr/lib/postgresql/*/bin.
	BinDir string
	// Settings are postgresql.conf settings for staging (e.g. shared_buffers), written
	// after production's; the settings restage controls (ports, sockets, archiving,
	// replication, hba files) are refused (ErrSettings). listen_addresses applies on the
	// live port; "": localhost.
	Settings map[string]string
	// User owns and runs the clusters; "": "postgres" when restage runs as root.
	User string
	// Timeout bounds each start (with its recovery) and each stop; 0: 10m.
	Timeout time.Duration
	// DeltaChecksums makes a delta restore read every file of the slot for its checksum
	// (pgBackRest's default). Otherwise a slot whose last restore restage recorded is
	// restored trusting size and modification time (pgBackRest's --delta --force): every
	// file written since that restore (by the cluster restage ran there) is first given
	// a time no backup holds, so that only files restage never touched are trusted.
	DeltaChecksums bool
	// Logins are roles restage may also log in as through the slot's socket (peer
	// authentication, mapped as for the superuser): the migrations' role, so that the
	// code's migrations run without the superuser's rights (SideDSNAs).
	Logins []string
	// Logger receives one line per action; nil: slog.Default().
	Logger *slog.Logger
}

// DefaultTimeout bounds each start and stop when ClustersConfig.Timeout is 0.
const DefaultTimeout = 10 * time.Minute

// Slot names.
var slotNames = []string{"a", "b"}

const (
	markerFile = "restage-slot.json"
	liveFile   = "live"
)

// Superuser is the restored cluster's superuser, the role restage connects as.
const Superuser = "postgres"

// Slot is one of the two data directories.
type Slot struct {
	Name string // "a" or "b"
	Dir  string // its folder: the marker, data/, server.log, the socket
	Data string // the data directory
}

// tablespaceDir is the folder beside the data directory data where a restore puts the
// cluster's tablespaces (never production's paths): <slot>/tablespaces.
func tablespaceDir(data string) string { return filepath.Join(filepath.Dir(data), "tablespaces") }

// emptySlot removes s's data directory and its tablespaces, which go with it.
func emptySlot(s *Slot) error {
	for _, dir := range []string{s.Data, tablespaceDir(s.Data)} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("physical: empty %s: %w", s, err)
		}
	}
	return nil
}

// String names the slot ("slot a") for messages.
func (s *Slot) String() string { return "slot " + s.Name }

// marker is a slot's marker file: without it naming the environment, restage leaves the
// folder alone.
type marker struct {
	Environment string    `json:"environment"`
	Slot        string    `json:"slot"`
	State       string    `json:"state"` // restoring, restored
	Backup      string    `json:"backup,omitempty"`
	Updated     time.Time `json:"updated"`
	// Started is when the restore into the slot began: the files restored carry their
	// times on production, earlier than that; files written later are staging's.
	Started time.Time `json:"started,omitzero"`
}

const (
	stateRestoring = "restoring"
	stateRestored  = "restored"
)

// Clusters manages the A/B slots of one environment.
type Clusters struct {
	cfg   ClustersConfig
	owner *owner
	pgCtl string
	log   *slog.Logger
}

// settingName is what a setting's name may be.
var settingName = regexp.MustCompile(`^[a-z][a-z0-9_.]*$`)

// controlled are the settings restage writes itself; the config may not set them.
var controlled = []string{"port", "unix_socket_directories", "hba_file", "ident_file", "data_directory",
	"config_file", "archive_mode", "archive_command", "archive_library", "primary_conninfo",
	"primary_slot_name", "restore_command", "archive_cleanup_command", "recovery_end_command",
	"recovery_target", "recovery_target_action", "recovery_target_inclusive", "recovery_target_lsn",
	"recovery_target_name", "recovery_target_time", "recovery_target_timeline", "recovery_target_xid",
	"promote_trigger_file", "hot_standby", "external_pid_file", "max_logical_replication_workers"}

// CheckSettings returns the problems of settings, each naming its key under prefix
// (e.g. "cluster.settings").
func CheckSettings(prefix string, settings map[string]string) []string {
	var p []string
	for _, k := range slices.Sorted(mapKeys(settings)) {
		switch {
		case !settingName.MatchString(k):
			p = append(p, fmt.Sprintf("%s.%s: not a setting name", prefix, k))
		case k == "include" || k == "include_dir" || k == "include_if_exists":
			p = append(p, fmt.Sprintf("%s.%s: %v: name the settings themselves (a file of settings could hold ones restage controls)", prefix, k, ErrSettings))
		case slices.Contains(controlled, k):
			p = append(p, fmt.Sprintf("%s.%s: %v (restage sets it so that the restored cluster cannot archive into production's repository, follow production, or be reached outside its slot)", prefix, k, ErrSettings))
		case strings.ContainsAny(settings[k], "\n\r\x00"):
			p = append(p, fmt.Sprintf("%s.%s: a value on one line, please", prefix, k))
		}
	}
	return p
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// NewClusters checks cfg. It touches nothing.
func NewClusters(cfg ClustersConfig) (*Clusters, error) {
	var p []string
	if cfg.Environment == "" {
		p = append(p, "Environment is required")
	}
	if !filepath.IsAbs(cfg.Dir) {
		p = append(p, fmt.Sprintf("Dir %q: want an absolute path", cfg.Dir))
	} else if strings.ContainsAny(cfg.Dir, "'\"\\\n") {
		p = append(p, fmt.Sprintf("Dir %q: no quotes or backslashes, please (it goes into postgresql.conf)", cfg.Dir))
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		p = append(p, fmt.Sprintf("Port %d: want a TCP port", cfg.Port))
	}
	if cfg.SidePort == 0 {
		cfg.SidePort = cfg.Port + 1
	}
	if cfg.SidePort <= 0 || cfg.SidePort > 65535 || cfg.SidePort == cfg.Port {
		p = append(p, fmt.Sprintf("SidePort %d: want a TCP port other than Port", cfg.SidePort))
	}
	p = append(p, CheckSettings("Settings", cfg.Settings)...)
	if len(p) > 0 {
		return nil, fmt.Errorf("physical: %s", strings.Join(p, "; "))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	bin := cfg.BinDir
	if bin == "" {
		bin = newestBinDir()
	}
	pgctl := filepath.Join(bin, "pg_ctl")
	if _, err := os.Stat(pgctl); err != nil {
		return nil, fmt.Errorf("physical: pg_ctl: %w (set the PostgreSQL server binaries' folder)", err)
	}
	o, err := lookupOwner(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	return &Clusters{cfg: cfg, owner: o, pgCtl: pgctl, log: cfg.Logger}, nil
}

// newestBinDir is the newest /usr/lib/postgresql/*/bin, "" when there is none.
func newestBinDir() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	if len(dirs) == 0 {
		return ""
	}
	return dirs[0]
}

func major(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Port returns the live port.
func (c *Clusters) Port() int { return c.cfg.Port }

// slot returns the slot called name.
func (c *Clusters) slot(name string) *Slot {
	dir := filepath.Join(c.cfg.Dir, name)
	return &Slot{Name: name, Dir: dir, Data: filepath.Join(dir, "data")}
}

// CheckOrigin refuses a configuration that could reach production's cluster: the live
// or side port of production's host when that is this host, or a folder that holds
// production's data directory or lies inside it.
func (c *Clusters) CheckOrigin(o Origin) error {
	if o.Dir != "" && localHost(o.Host) {
		pd, cd := filepath.Clean(o.Dir), filepath.Clean(c.cfg.Dir)
		if pd == cd || strings.HasPrefix(pd+"/", cd+"/") || strings.HasPrefix(cd+"/", pd+"/") {
			return fmt.Errorf("%w: cluster.dir %s overlaps production's data directory %s (pgBackRest's pg1-path)", ErrProduction, cd, pd)
		}
	}
	if o.Port != 0 && localHost(o.Host) && (o.Port == c.cfg.Port || o.Port == c.cfg.SidePort) {
		return fmt.Errorf("%w: cluster.port %d (or the side port %d) is production's port on this host (pgBackRest's pg1-port)", ErrProduction, c.cfg.Port, c.cfg.SidePort)
	}
	return nil
}

// localHost reports whether h names this host: a loopback name or address, its host
// name, or one of its interfaces' addresses. An address that is this host's for a connection counts too: the unspecified ones
// (0.0.0.0, ::, which connect to this host) and the numeric forms the C library reads
// besides dotted quads ("127.1", "2130706433", "0x7f000001"), which Go's resolver does
// not, and a bracketed IPv6 address ("[::1]").
func localHost(h string) bool {
	switch h {
	case "", "localhost", "127.0.0.1", "::1":
		return true
	}
	if name, err := os.Hostname(); err == nil && strings.EqualFold(name, h) {
		return true
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	var addrs []string
	if ip := inetAton(h); ip != nil {
		addrs = []string{ip.String()}
	} else if a, err := net.LookupHost(h); err == nil {
		addrs = a
	}
	if len(addrs) == 0 {
		return false
	}
	own := map[string]bool{}
	if ifaddrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range ifaddrs {
			if n, ok := a.(*net.IPNet); ok {
				own[n.IP.String()] = true
			}
		}
	}
	for _, a := range addrs {
		if ip := net.ParseIP(a); ip != nil && (ip.IsLoopback() || ip.IsUnspecified() || own[ip.String()]) {
			return true
		}
	}
	return false
}

// inetAton reads h as inet_aton(3) does: one to four numbers separated by dots, each
// decimal, octal (leading 0) or hexadecimal (0x), the last filling the bytes the others
// leave. It returns nil when h is not such an address.
func inetAton(h string) net.IP {
	parts := strings.Split(h, ".")
	if len(parts) > 4 {
		return nil
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 0, 32)
		if err != nil || p == "" || p[0] == '+' {
			return nil
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 0xff {
			return nil
		}
		v |= n << (24 - 8*i)
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(4-len(nums)+1)) {
		return nil
	}
	v |= last
	return net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// readMarker reads the slot's marker; ErrNotOurs when it is missing or names another
// environment or slot.
func (c *Clusters) readMarker(s *Slot) (*marker, error) {
	b, err := readNoFollow(filepath.Join(s.Dir, markerFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNotOurs, s.Dir, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: %s: bad marker: %v", ErrNotOurs, s.Dir, err)
	}
	if m.Environment != c.cfg.Environment || m.Slot != s.Name {
		return nil, fmt.Errorf("%w: %s is marked for environment %q slot %q", ErrNotOurs, s.Dir, m.Environment, m.Slot)
	}
	return &m, nil
}

// readNoFollow reads path, refusing a symbolic link there.
func readNoFollow(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ours checks the slot before restage stops, starts, restores into, moves or deletes
// it: its folder and data directory are plain folders (restage makes them so; a
// symbolic link could lead to another cluster, whose files pg_ctl and pgBackRest would
// follow), and its marker names this environment and slot.
func (c *Clusters) ours(s *Slot) error {
	for _, p := range []string{s.Dir, s.Data} {
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist) && p == s.Data: // not restored yet
		case err != nil:
			return fmt.Errorf("%w: %v", ErrNotOurs, err)
		case st.Mode()&fs.ModeSymlink != 0 || !st.IsDir():
			return fmt.Errorf("%w: %s is a symbolic link or not a folder (restage makes its slots plain folders)", ErrNotOurs, p)
		}
	}
	_, err := c.readMarker(s)
	return err
}

func (c *Clusters) writeMarker(s *Slot, state, backup string, started time.Time) error {
	b, _ := json.MarshalIndent(marker{Environment: c.cfg.Environment, Slot: s.Name, State: state,
		Backup: backup, Updated: time.Now().UTC(), Started: started.UTC()}, "", "  ")
	return atomicfile.WriteFile(filepath.Join(s.Dir, markerFile), append(b, '\n'), 0o600)
}

// Live returns the slot on the live port, nil before the first cutover.
func (c *Clusters) Live() (*Slot, error) {
	b, err := os.ReadFile(filepath.Join(c.cfg.Dir, liveFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	name := strings.TrimSpace(string(b))
	if !slices.Contains(slotNames, name) {
		return nil, fmt.Errorf("%w: %s names %q", ErrSlot, filepath.Join(c.cfg.Dir, liveFile), name)
	}
	s := c.slot(name)
	if err := c.ours(s); err != nil {
		return nil, err
	}
	return s, nil
}

// setLive records s (nil: none) as the slot on the live port.
func (c *Clusters) setLive(s *Slot) error {
	p := filepath.Join(c.cfg.Dir, liveFile)
	if s == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return atomicfile.SyncDir(c.cfg.Dir)
	}
	return atomicfile.WriteFile(p, []byte(s.Name+"\n"), 0o600)
}

// Idle returns the slot that is not live.
func (c *Clusters) Idle() (*Slot, error) {
	live, err := c.Live()
	if err != nil {
		return nil, err
	}
	if live != nil && live.Name == "a" {
		return c.slot("b"), nil
	}
	return c.slot("a"), nil
}

// Repair makes the folder and puts right what a crashed run left: the live slot is
// running on the live port, the idle slot is stopped, and a half-restored idle slot is
// emptied. Any slot folder without this environment's marker stops it (ErrNotOurs). It
// returns what it did.
func (c *Clusters) Repair(ctx context.Context) ([]string, error) {
	var did []string
	if err := c.ensureDir(); err != nil {
		return nil, err
	}
	for _, n := range slotNames {
		s := c.slot(n)
		if _, err := os.Lstat(s.Dir); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := c.ours(s); err != nil {
			return did, err
		}
	}
	live, err := c.Live()
	if err != nil {
		return did, err
	}
	if live != nil {
		up, err := c.Running(ctx, live)
		if err != nil {
			return did, err
		}
		if !up {
			if err := c.start(ctx, live); err != nil {
				return did, err
			}
			did = append(did, fmt.Sprintf("started the live %s on port %d (it was down)", live, c.cfg.Port))
		}
	}
	idle, err := c.Idle()
	if err != nil {
		return did, err
	}
	m, err := c.readMarker(idle)
	if errors.Is(err, ErrNotOurs) {
		if _, serr := os.Lstat(idle.Dir); errors.Is(serr, os.ErrNotExist) {
			return did, nil
		}
		return did, err
	}
	up, err := c.Running(ctx, idle)
	if err != nil {
		return did, err
	}
	if up {
		if err := c.stop(ctx, idle); err != nil {
			return did, err
		}
		did = append(did, fmt.Sprintf("stopped %s, left running by a crashed run", idle))
	}
	if m.State == stateRestoring {
		if err := emptySlot(idle); err != nil {
			return did, err
		}
		did = append(did, fmt.Sprintf("emptied %s, half-restored by a run that failed or was killed", idle))
	}
	return did, nil
}

// ensureDir makes the clusters' folder (0700, the owner's) when it is missing.
func (c *Clusters) ensureDir() error {
	// Not inside a cluster's data directory (production's, on this host, or any other):
	// restage's slots and their servers would live among its files.
	for d := filepath.Clean(c.cfg.Dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "PG_VERSION")); err == nil {
			return fmt.Errorf("%w: cluster.dir %s lies in the data directory %s", ErrNotOurs, c.cfg.Dir, d)
		}
		if d == filepath.Dir(d) {
			break
		}
	}
	if _, err := os.Lstat(c.cfg.Dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	if err := c.owner.chown(c.cfg.Dir); err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	return nil
}

// Restore restores set from src into the idle slot, with delta when asked and the slot
// holds an earlier copy; the live slot is not touched. The set is verified (Source.Verify)
// and the side port checked free before the idle slot is made, stopped or emptied. The
// slot is left stopped. An error after the slot was touched returns it with the error.
func (c *Clusters) Restore(ctx context.Context, src Source, set *BackupSet, delta bool) (*Slot, error) {
	if err := c.ensureDir(); err != nil {
		return nil, err
	}
	s, err := c.Idle()
	if err != nil {
		return nil, err
	}
	_, err = os.Lstat(s.Dir)
	exists := !errors.Is(err, os.ErrNotExist)
	if exists {
		if err := c.ours(s); err != nil {
			return nil, err
		}
	}
	// Check the set, and the side port the restored slot starts on next (start refuses
	// it while another server answers there), before the idle slot (the copy kept for a
	// rollback and the next delta) is made, stopped or emptied: a corrupt backup or a
	// busy port must change nothing.
	if err := src.Verify(ctx, set); err != nil {
		return nil, err
	}
	if err := c.portFree(c.cfg.SidePort, s); err != nil {
		return nil, fmt.Errorf("side port: %w", err)
	}
	if !exists {
		if err := os.Mkdir(s.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("physical: %w", err)
		}
		if err := c.owner.chown(s.Dir); err != nil {
			return nil, fmt.Errorf("physical: %w", err)
		}
	}
	if up, err := c.Running(ctx, s); err != nil {
		return nil, err
	} else if up {
		if err := c.stop(ctx, s); err != nil {
			return nil, err
		}
	}
	prev, _ := c.readMarker(s) // nil for a new slot
	started := time.Now()
	if err := c.writeMarker(s, stateRestoring, set.Label, started); err != nil {
		return nil, fmt.Errorf("physical: %w", err)
	}
	// From here on the slot is touched: an error returns it too (Empty, Discard).
	_, err = os.Stat(filepath.Join(s.Data, "PG_VERSION"))
	delta = delta && err == nil
	if !delta {
		if err := emptySlot(s); err != nil {
			return s, err
		}
	}
	byTime := delta && c.byTime(prev)
	if byTime {
		n, err := untrustSince(s.Dir, prev.Started)
		if err != nil {
			return s, fmt.Errorf("physical: %w", err)
		}
		c.log.Info("delta by size and time", "slot", s.Name, "written since the last restore", n)
	}
	if err := src.Restore(ctx, set, s.Data, RestoreOptions{Delta: delta, ByTime: byTime, Verified: true}); err != nil {
		return s, err
	}
	if err := checkLinks(s); err != nil {
		return s, err
	}
	if err := c.clearLogs(ctx, s); err != nil {
		return s, err
	}
	if err := c.writeMarker(s, stateRestored, set.Label, started); err != nil {
		return s, fmt.Errorf("physical: %w", err)
	}
	return s, nil
}

// clearLogs empties the server log folders of production that a restore brought into
// the slot's data directory (with logging_collector, log_directory is "log" inside it by
// default, "pg_log" before PostgreSQL 10, and pgBackRest copies them): production's logs
// quote rows in their errors and, with log_statement, every statement, values included,
// and no masking reaches them. The folder is the one the restored configuration names
// (`postgres -C log_directory`, as the cluster's user, before the first start) besides
// those two, when it is inside the data directory.
func (c *Clusters) clearLogs(ctx context.Context, s *Slot) error {
	dirs := []string{"log", "pg_log"}
	if _, err := os.Stat(filepath.Join(s.Data, "postgresql.conf")); err == nil {
		out, err := c.owner.run(ctx, []string{filepath.Join(filepath.Dir(c.pgCtl), "postgres"), "-D", s.Data, "-C", "log_directory"})
		if err != nil {
			return fmt.Errorf("physical: the restored cluster's log_directory: %w", err)
		}
		if d := strings.TrimSpace(string(out)); d != "" && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	data, err := filepath.EvalSymlinks(s.Data)
	if err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			d = filepath.Join(s.Data, d)
		}
		fi, err := os.Lstat(d)
		if err != nil || !fi.IsDir() {
			continue // none, or a link checkLinks has judged
		}
		real, err := filepath.EvalSymlinks(d)
		if err != nil {
			return fmt.Errorf("physical: %w", err)
		}
		if rel, err := filepath.Rel(data, real); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			continue // not production's: a folder of this host outside the slot
		}
		entries, err := os.ReadDir(real)
		if err != nil {
			return fmt.Errorf("physical: %w", err)
		}
		for _, e := range entries {
			if err := os.RemoveAll(filepath.Join(real, e.Name())); err != nil {
				return fmt.Errorf("physical: remove production's server log: %w", err)
			}
		}
		if len(entries) > 0 {
			c.log.Info("production's server logs removed from the restored slot", "slot", s.Name, "folder", real, "files", len(entries))
		}
	}
	return nil
}

// checkLinks refuses a restored data directory whose symbolic links (the tablespaces in
// pg_tblspc, pg_wal or any other at its top) lead outside the slot: its server would
// write into another folder, such as production's tablespace on this host.
func checkLinks(s *Slot) error {
	root, err := filepath.EvalSymlinks(s.Dir)
	if err != nil {
		return fmt.Errorf("physical: %w", err)
	}
	var out []string
	for _, dir := range []string{s.Data, filepath.Join(s.Data, "pg_tblspc")} {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("physical: %w", err)
		}
		for _, e := range entries {
			if e.Type()&fs.ModeSymlink == 0 {
				continue
			}
			link := filepath.Join(dir, e.Name())
			target, err := filepath.EvalSymlinks(link)
			if err != nil {
				out = append(out, fmt.Sprintf("%s (%v)", link, err))
				continue
			}
			if rel, err := filepath.Rel(root, target); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				out = append(out, link+" -> "+target)
			}
		}
	}
	if len(out) > 0 {
		return fmt.Errorf("%w: the restored data directory of %s links outside its folder %s: %s", ErrNotOurs, s, s.Dir, strings.Join(out, ", "))
	}
	return nil
}

// untrusted is the time given to a slot's files written since its last restore: no
// backup's manifest holds it, so a delta by size and time copies them again.
var untrusted = time.Unix(0, 0)

// untrustSince gives every regular file under dir modified at or after since the time
// untrusted, and returns how many it changed. Files a restore wrote carry their times
// on production, which are before since; any later time is a write on staging.
func untrustSince(dir string, since time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.ModTime().Before(since) {
			return nil
		}
		n++
		return os.Chtimes(path, untrusted, untrusted)
	})
	return n, err
}

// byTime says whether a delta over the copy prev describes may trust size and time: its
// restore finished and the marker says when it began.
func (c *Clusters) byTime(prev *marker) bool {
	return !c.cfg.DeltaChecksums && prev != nil && prev.State == stateRestored && !prev.Started.IsZero()
}

// DeltaByTime reports whether a delta restore into the idle slot trusts size and time
// (else it reads every file for its checksum).
func (c *Clusters) DeltaByTime() bool {
	s, err := c.Idle()
	if err != nil {
		return false
	}
	m, err := c.readMarker(s)
	return err == nil && c.byTime(m)
}

// Delta reports whether the idle slot holds a copy a delta restore can start from.
func (c *Clusters) Delta() bool {
	s, err := c.Idle()
	if err != nil {
		return false
	}
	m, err := c.readMarker(s)
	if err != nil || m.State != stateRestored {
		return false
	}
	_, err = os.Stat(filepath.Join(s.Data, "PG_VERSION"))
	return err == nil
}
