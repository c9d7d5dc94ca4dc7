package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/restage/restage/internal/safefile"
	"github.com/restage/restage/internal/smtptest"
	"github.com/restage/restage/internal/testutil"
	"github.com/restage/restage/notify"
	"github.com/restage/restage/notify/notifytest"
)

func newSpool(t testing.TB, dir string, next notify.Notifier) *notify.Spool {
	t.Helper()
	s, err := notify.NewSpool(dir, next, nil)
	if err != nil {
		t.Fatalf("NewSpool: %v", err)
	}
	return s
}

// reportIDs returns the X-Restage-Report-ID of every message the server accepted, in order.
func reportIDs(t testing.TB, srv *smtptest.Server) []string {
	t.Helper()
	var ids []string
	for _, m := range srv.Mails() {
		msg, err := mail.ReadMessage(strings.NewReader(string(m.Data)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, msg.Header.Get("X-Restage-Report-ID"))
	}
	return ids
}

// messageIDs returns the IDs of the reports f accepted, in order.
func messageIDs(f *notifytest.Fake) []string {
	var ids []string
	for _, m := range f.Messages() {
		ids = append(ids, m.ID)
	}
	return ids
}

// pendingIDs returns the IDs of the reports s holds, oldest first.
func pendingIDs(t testing.TB, s *notify.Spool) []string {
	t.Helper()
	ms, err := s.Pending()
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

// dirNames lists a folder.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// TestSpoolConformance: a Spool around each of the SMTP fixture's notifiers. A report
// for a target that is down, stalls or refuses it is spooled, and the error says so and
// carries the delivery error.
func TestSpoolConformance(t *testing.T) {
	notifytest.Notifier(t, smtpFixture(func(t *testing.T, n notify.Notifier) notify.Notifier {
		return newSpool(t, t.TempDir(), n)
	}))
}

func TestSpoolSMTPDownThenUp(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	addr := srv.Addr
	srv.Close() // the mail server is down
	dir := t.TempDir()
	sp := newSpool(t, dir, newSMTP(t, notify.SMTPConfig{Addr: addr}))

	for _, id := range []string{"run-1", "run-2"} {
		err := sp.Notify(t.Context(), notifytest.Message(id))
		if !errors.Is(err, notify.ErrSpooled) {
			t.Fatalf("Notify(%s) = %v, want ErrSpooled", id, err)
		}
		if !strings.Contains(err.Error(), "smtp "+addr) {
			t.Errorf("error %q lacks the delivery error", err)
		}
	}
	if got := pendingIDs(t, sp); !slices.Equal(got, []string{"run-1", "run-2"}) {
		t.Fatalf("pending %v", got)
	}
	// The same report again is not spooled twice.
	if err := sp.Notify(t.Context(), notifytest.Message("run-2")); !errors.Is(err, notify.ErrSpooled) {
		t.Fatalf("re-Notify = %v", err)
	}
	if got := pendingIDs(t, sp); len(got) != 2 {
		t.Fatalf("pending %v after re-Notify", got)
	}

	srv = startSMTPAt(t, addr, smtptest.Options{}) // back up
	if err := sp.Notify(t.Context(), notifytest.Message("run-3")); err != nil {
		t.Fatalf("Notify with the server up: %v", err)
	}
	if got := reportIDs(t, srv); !slices.Equal(got, []string{"run-1", "run-2", "run-3"}) {
		t.Fatalf("server got %v, want the spooled ones first, once each", got)
	}
	if got := pendingIDs(t, sp); len(got) != 0 {
		t.Fatalf("still pending: %v", got)
	}
	// Nothing is sent twice: not on the next run, not for a retried ID.
	if err := sp.Notify(t.Context(), notifytest.Message("run-4")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Notify(t.Context(), notifytest.Message("run-3")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := reportIDs(t, srv); !slices.Equal(got, []string{"run-1", "run-2", "run-3", "run-4"}) {
		t.Fatalf("server got %v", got)
	}
	// The spooled copies carried everything, attachment included.
	r := parseMail(t, srv.Mails()[0].Data)
	m := notifytest.Message("run-1")
	if r.Body != m.Body || string(r.Log) != string(m.Log) || r.Topic != m.Topic {
		t.Errorf("spooled report changed: %+v", r)
	}
}

func TestSpoolCrashAfterDeliveryBeforeRemove(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	dir := t.TempDir()
	sp := newSpool(t, dir, newSMTP(t, notify.SMTPConfig{Addr: srv.Addr}))
	m := notifytest.Message("crash-1")
	if err := sp.Notify(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	// A crash between recording the delivery and removing the spool file leaves the file.
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000001-crash-1.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(t, sp); len(got) != 0 {
		t.Errorf("a delivered report is listed as pending: %v", got)
	}
	if err := sp.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Mails()); n != 1 {
		t.Fatalf("server got %d messages, want 1 (sent twice)", n)
	}
	if slices.Contains(dirNames(t, dir), "00000000000000000001-crash-1.json") {
		t.Error("delivered spool file not removed")
	}
}

func TestSpoolFileAtomicAndComplete(t *testing.T) {
	dir := t.TempDir()
	down := newWebhook(t, notify.WebhookConfig{URL: deadURL(t)})
	sp := newSpool(t, dir, down)
	// A crash while writing a spool file or the delivered record leaves only a temporary
	// file (.tmp-* from versions before atomicfile).
	for _, partial := range []string{"00000000000000000001-half.json.new", "delivered.new", ".tmp-123456"} {
		if err := os.WriteFile(filepath.Join(dir, partial), []byte(`{"id":"half`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := pendingIDs(t, sp); len(got) != 0 {
		t.Fatalf("partial file listed: %v", got)
	}
	m := notifytest.Message("atomic-1")
	if err := sp.Notify(t.Context(), m); !errors.Is(err, notify.ErrSpooled) {
		t.Fatalf("Notify = %v", err)
	}
	var jsons []string
	for _, n := range dirNames(t, dir) {
		switch {
		case strings.HasPrefix(n, ".tmp-"), strings.HasSuffix(n, ".new"):
			t.Errorf("partial file %s left", n)
		case strings.HasSuffix(n, ".json"):
			jsons = append(jsons, n)
		case n == ".lock" || n == "delivered":
		default:
			t.Errorf("unexpected file %s", n)
		}
	}
	if len(jsons) != 1 || !strings.HasSuffix(jsons[0], "-atomic-1.json") {
		t.Fatalf("spool files %v", jsons)
	}
	b, err := os.ReadFile(filepath.Join(dir, jsons[0]))
	if err != nil {
		t.Fatal(err)
	}
	var got notify.Message
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || got.Body != m.Body || string(got.Log) != string(m.Log) || !got.Time.Equal(m.Time) ||
		got.Topic != m.Topic || got.Status != m.Status || got.LogName != m.LogName {
		t.Errorf("spooled %+v, want %+v", got, m)
	}
	if fi, err := os.Stat(filepath.Join(dir, jsons[0])); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("spool file mode %v %v", fi.Mode(), err)
	}
}

func TestSpoolCorruptFile(t *testing.T) {
	ws := startWebhook(t)
	dir := t.TempDir()
	sp := newSpool(t, dir, newWebhook(t, notify.WebhookConfig{URL: ws.URL}))
	ws.set(http.StatusServiceUnavailable, "maintenance")
	if err := sp.Notify(t.Context(), notifytest.Message("good-1")); !errors.Is(err, notify.ErrSpooled) {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "00000000000000000001-bad.json")
	noID := filepath.Join(dir, "00000000000000000002-noid.json")
	if err := os.WriteFile(bad, []byte(`{"id": "trunc`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(noID, []byte(`{"subject": "x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ms, err := sp.Pending()
	if !errors.Is(err, notify.ErrCorruptSpoolFile) || len(ms) != 1 || ms[0].ID != "good-1" {
		t.Fatalf("Pending = %d, %v", len(ms), err)
	}
	ws.set(http.StatusOK, "")
	err = sp.Flush(t.Context())
	if !errors.Is(err, notify.ErrCorruptSpoolFile) || !strings.Contains(err.Error(), bad) ||
		!strings.Contains(err.Error(), noID) {
		t.Fatalf("Flush = %v, want both corrupt files reported", err)
	}
	names := dirNames(t, dir)
	for _, want := range []string{"00000000000000000001-bad.corrupt", "00000000000000000002-noid.corrupt"} {
		if !slices.Contains(names, want) {
			t.Errorf("%s not kept aside (have %v)", want, names)
		}
	}
	if ps := ws.Payloads(); len(ps) != 1 || ps[0].ID != "good-1" {
		t.Errorf("good report not delivered past the corrupt ones: %+v", ps)
	}
	if err := sp.Flush(t.Context()); err != nil {
		t.Errorf("second Flush = %v (corrupt files already moved aside)", err)
	}
}

func TestSpoolPoisonReportDoesNotBlockNewOnes(t *testing.T) {
	// A fake target that rejects one report for good: the new report must still get out.
	target := &notifytest.Fake{NotifyFunc: func(_ context.Context, m *notify.Message) error {
		if m.ID == "poison" {
			return errors.New("552 message too large")
		}
		return nil
	}}
	sp := newSpool(t, t.TempDir(), target)
	if err := sp.Notify(t.Context(), notifytest.Message("poison")); !errors.Is(err, notify.ErrSpooled) {
		t.Fatal(err)
	}
	for _, id := range []string{"new-1", "new-2"} {
		if err := sp.Notify(t.Context(), notifytest.Message(id)); err != nil {
			t.Fatalf("Notify(%s) = %v", id, err)
		}
	}
	if got := messageIDs(target); !slices.Equal(got, []string{"new-1", "new-2"}) {
		t.Errorf("delivered %v", got)
	}
	if p := pendingIDs(t, sp); !slices.Equal(p, []string{"poison"}) {
		t.Errorf("pending %v", p)
	}
	if err := sp.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "552") {
		t.Errorf("Flush = %v, want the rejection", err)
	}
}

func TestSpoolAssignsIDWithoutChangingCaller(t *testing.T) {
	sp := newSpool(t, t.TempDir(), newWebhook(t, notify.WebhookConfig{URL: deadURL(t)}))
	m := notifytest.Message("")
	if err := sp.Notify(t.Context(), m); !errors.Is(err, notify.ErrSpooled) {
		t.Fatal(err)
	}
	if m.ID != "" {
		t.Error("caller's message modified")
	}
	if p := pendingIDs(t, sp); len(p) != 1 || p[0] == "" {
		t.Errorf("pending %v", p)
	}
}

func TestSpoolCancelledContextSpools(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	sp := newSpool(t, t.TempDir(), newSMTP(t, notify.SMTPConfig{Addr: srv.Addr}))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sp.Notify(ctx, notifytest.Message("late")); !errors.Is(err, notify.ErrSpooled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Notify = %v, want ErrSpooled and context.Canceled", err)
	}
	if err := sp.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := reportIDs(t, srv); !slices.Equal(got, []string{"late"}) {
		t.Errorf("server got %v", got)
	}
}

func TestSpoolCannotSpool(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	sp := newSpool(t, dir, newWebhook(t, notify.WebhookConfig{URL: deadURL(t)}))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o600); err != nil { // a file where the folder was
		t.Fatal(err)
	}
	err := sp.Notify(t.Context(), notifytest.Message("lost"))
	if err == nil || errors.Is(err, notify.ErrSpooled) {
		t.Fatalf("Notify = %v, want a non-spooled error", err)
	}
}

func TestSpoolManyProcessesDeliverOnce(t *testing.T) {
	// Several Spool values on one folder (as several processes would have) flushing at
	// once: every report arrives exactly once.
	srv := startSMTP(t, smtptest.Options{})
	addr := srv.Addr
	srv.Close()
	dir := t.TempDir()
	var want []string
	first := newSpool(t, dir, newSMTP(t, notify.SMTPConfig{Addr: addr}))
	for i := range 6 {
		id := fmt.Sprintf("multi-%d", i)
		want = append(want, id)
		if err := first.Notify(t.Context(), notifytest.Message(id)); !errors.Is(err, notify.ErrSpooled) {
			t.Fatal(err)
		}
	}
	srv = startSMTPAt(t, addr, smtptest.Options{})
	var wg sync.WaitGroup
	var failures atomic.Int32
	for range 4 {
		sp := newSpool(t, dir, newSMTP(t, notify.SMTPConfig{Addr: addr}))
		wg.Go(func() {
			if err := sp.Flush(t.Context()); err != nil {
				t.Errorf("Flush: %v", err)
				failures.Add(1)
			}
		})
	}
	wg.Wait()
	if got := reportIDs(t, srv); !slices.Equal(got, want) {
		t.Fatalf("server got %v, want %v", got, want)
	}
}

func TestSpoolEach(t *testing.T) {
	srv := startSMTP(t, smtptest.Options{})
	ws := startWebhook(t)
	ws.set(http.StatusBadGateway, "upstream down")
	dir := t.TempDir()
	f, err := notify.SpoolEach(dir, map[string]notify.Notifier{
		"email":   newSMTP(t, notify.SMTPConfig{Addr: srv.Addr}),
		"webhook": newWebhook(t, notify.WebhookConfig{URL: ws.URL}),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Notify(t.Context(), notifytest.Message("each-1"))
	if !errors.Is(err, notify.ErrSpooled) || !strings.HasPrefix(err.Error(), "webhook: ") ||
		!strings.Contains(err.Error(), "502 Bad Gateway") {
		t.Fatalf("Notify = %v, want the webhook spooled", err)
	}
	if strings.Contains(err.Error(), "email") {
		t.Errorf("healthy target in error: %v", err)
	}
	pend, err := f.Pending()
	if err != nil || len(pend) != 1 || len(pend["webhook"]) != 1 || pend["webhook"][0].ID != "each-1" {
		t.Errorf("Pending = %v, %v", pend, err)
	}
	ws.set(http.StatusOK, "")
	if err := f.Notify(t.Context(), notifytest.Message("each-2")); err != nil {
		t.Fatal(err)
	}
	if got := reportIDs(t, srv); !slices.Equal(got, []string{"each-1", "each-2"}) {
		t.Errorf("email got %v: the healthy target must not get a report twice", got)
	}
	var wh []string
	for _, p := range ws.Payloads() {
		wh = append(wh, p.ID)
	}
	if !slices.Equal(wh, []string{"each-1", "each-2"}) {
		t.Errorf("webhook got %v", wh)
	}
	if err := f.Flush(t.Context()); err != nil {
		t.Errorf("Flush: %v", err)
	}
	for _, sub := range []string{"email", "webhook"} {
		if _, err := os.Stat(filepath.Join(dir, sub, "delivered")); err != nil {
			t.Errorf("spool %s: %v", sub, err)
		}
	}
	if _, err := notify.SpoolEach(dir, map[string]notify.Notifier{"../x": f}, nil); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("bad name: %v", err)
	}
}

func TestNewSpoolValidation(t *testing.T) {
	if _, err := notify.NewSpool("", &notifytest.Fake{}, nil); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("empty dir: %v", err)
	}
	if _, err := notify.NewSpool(t.TempDir(), nil, nil); !errors.Is(err, notify.ErrInvalidConfig) {
		t.Errorf("nil next: %v", err)
	}
}

func TestSpoolRejectedReportDoesNotHoldUpLaterSpooledOnes(t *testing.T) {
	// "poison" is refused for good; while the target is down, "later" is spooled behind it.
	var up atomic.Bool
	target := &notifytest.Fake{NotifyFunc: func(_ context.Context, m *notify.Message) error {
		switch {
		case m.ID == "poison":
			return fmt.Errorf("552 message too large: %w", notify.ErrRejected)
		case !up.Load():
			return errors.New("connection refused")
		}
		return nil
	}}
	sp := newSpool(t, t.TempDir(), target)
	for _, id := range []string{"poison", "later"} {
		if err := sp.Notify(t.Context(), notifytest.Message(id)); !errors.Is(err, notify.ErrSpooled) {
			t.Fatalf("Notify(%s) = %v", id, err)
		}
	}
	up.Store(true)
	err := sp.Flush(t.Context())
	if !errors.Is(err, notify.ErrRejected) {
		t.Errorf("Flush = %v, want the rejection", err)
	}
	if got := messageIDs(target); !slices.Equal(got, []string{"later"}) {
		t.Errorf("delivered %v, want [later]", got)
	}
	if p := pendingIDs(t, sp); !slices.Equal(p, []string{"poison"}) {
		t.Errorf("pending %v: the rejected report must stay spooled", p)
	}
}

func TestSpoolStopsAtTheFirstTargetFailure(t *testing.T) {
	// A target that is down for the first report is not tried for the others.
	var tries atomic.Int32
	sp := newSpool(t, t.TempDir(), &notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
		tries.Add(1)
		return errors.New("connection refused")
	}})
	for _, id := range []string{"a", "b", "c"} {
		if err := sp.Notify(t.Context(), notifytest.Message(id)); !errors.Is(err, notify.ErrSpooled) {
			t.Fatal(err)
		}
	}
	tries.Store(0)
	if err := sp.Flush(t.Context()); err == nil || errors.Is(err, notify.ErrRejected) {
		t.Fatalf("Flush = %v", err)
	}
	if n := tries.Load(); n != 1 {
		t.Errorf("%d delivery attempts, want 1", n)
	}
}

// TestSpoolFilesArePrivate: the spool folder (and the parents NewSpool makes) is 0700,
// also one that existed wider; every file in it is 0600.
func TestSpoolFilesArePrivate(t *testing.T) {
	base := t.TempDir()
	var up atomic.Bool
	target := &notifytest.Fake{NotifyFunc: func(context.Context, *notify.Message) error {
		if !up.Load() {
			return errors.New("connection refused")
		}
		return nil
	}}
	fresh := filepath.Join(base, "state", "spool")
	sp := newSpool(t, fresh, target)
	testutil.RequireMode(t, filepath.Join(base, "state"), 0o700)
	testutil.RequireMode(t, fresh, 0o700)
	if err := sp.Notify(t.Context(), notifytest.Message("one")); !errors.Is(err, notify.ErrSpooled) {
		t.Fatal(err)
	}
	up.Store(true)
	if err := sp.Notify(t.Context(), notifytest.Message("two")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Notify(t.Context(), notifytest.Message("three")); err != nil {
		t.Fatal(err)
	}
	up.Store(false)
	if err := sp.Notify(t.Context(), notifytest.Message("four")); !errors.Is(err, notify.ErrSpooled) {
		t.Fatal(err)
	}
	names := dirNames(t, fresh)
	if !slices.Contains(names, "delivered") || !slices.Contains(names, ".lock") || len(names) != 3 {
		t.Fatalf("spool holds %v, want delivered, .lock and one report", names)
	}
	for _, n := range names {
		testutil.RequireMode(t, filepath.Join(fresh, n), 0o600)
	}

	wide := filepath.Join(base, "wide")
	if err := os.Mkdir(wide, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(wide, "delivered"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sp = newSpool(t, wide, target)
	testutil.RequireMode(t, wide, 0o700)
	up.Store(true)
	if err := sp.Notify(t.Context(), notifytest.Message("five")); err != nil {
		t.Fatal(err)
	}
	testutil.RequireMode(t, filepath.Join(wide, "delivered"), 0o600)

	// A folder other users may write to is refused, not narrowed: one of them could
	// have planted reports there, which the spool would deliver as the environment's.
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := notify.NewSpool(open, target, nil); !errors.Is(err, safefile.ErrNotPrivate) {
		t.Fatalf("a spool folder others may write to: %v, want it refused", err)
	}
}

// TestSpoolNeverFollowsPlantedSymlinks: symbolic links planted at the spool folder's path,
// at its delivered record and at its lock file leave their targets as they were (a
// missing target is not created); a linked report is not sent.
func TestSpoolNeverFollowsPlantedSymlinks(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(outside, "victim.txt")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	unchanged := func() {
		t.Helper()
		b, err := os.ReadFile(victim)
		fi, _ := os.Stat(outside)
		if err != nil || string(b) != "precious\n" || fi.Mode().Perm() != 0o755 {
			t.Fatalf("a symlink's target changed: %q %v, folder mode %v", b, err, fi.Mode().Perm())
		}
		if names := dirNames(t, outside); len(names) != 1 {
			t.Fatalf("files created through a symlink: %v", names)
		}
	}
	target := &notifytest.Fake{}

	// The folder itself.
	link := filepath.Join(base, "spool-link")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	if _, err := notify.NewSpool(link, target, nil); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("NewSpool on a symlink: %v", err)
	}
	unchanged()

	// The delivered record, the lock and a report.
	dir := filepath.Join(base, "spool")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "delivered")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "lock-target"), filepath.Join(dir, ".lock")); err != nil {
		t.Fatal(err)
	}
	sp := newSpool(t, dir, target)
	if err := sp.Notify(t.Context(), notifytest.Message("real")); err != nil {
		t.Logf("Notify: %v", err)
	}
	if err := sp.Flush(t.Context()); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("Flush with a symlink as its lock: %v", err)
	}
	unchanged()

	// A report linked into an otherwise sound spool.
	dir2 := filepath.Join(base, "spool2")
	sp = newSpool(t, dir2, target)
	if err := os.WriteFile(filepath.Join(outside, "report.json"), []byte(`{"id":"planted","subject":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "report.json"), filepath.Join(dir2, "00000000000000000001-planted.json")); err != nil {
		t.Fatal(err)
	}
	if err := sp.Flush(t.Context()); err != nil {
		t.Errorf("Flush: %v", err)
	}
	if err := os.Remove(filepath.Join(outside, "report.json")); err != nil {
		t.Fatal(err)
	}
	unchanged()
	if sent := messageIDs(target); slices.Contains(sent, "planted") {
		t.Errorf("a report linked into the spool was sent: %v", sent)
	}
}

// TestSpoolTrimsDeliveredRecord: the delivered record is cut back to its newest 1000 IDs
// once it holds more than 2000 (rewritten whole, atomically, 0600); the IDs kept still
// stop a second delivery.
func TestSpoolTrimsDeliveredRecord(t *testing.T) {
	dir := t.TempDir()
	var ids strings.Builder
	for i := range 2001 {
		fmt.Fprintf(&ids, "old-%04d\n", i)
	}
	record := filepath.Join(dir, "delivered")
	if err := os.WriteFile(record, []byte(ids.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	target := &notifytest.Fake{}
	sp := newSpool(t, dir, target)
	if err := sp.Notify(t.Context(), notifytest.Message("new-1")); err != nil { // trims, then delivers
		t.Fatal(err)
	}
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(b))
	if len(lines) != 1001 || lines[0] != "old-1001" || lines[999] != "old-2000" || lines[1000] != "new-1" {
		t.Errorf("delivered record holds %d IDs, %q ... %q", len(lines), lines[0], lines[len(lines)-1])
	}
	testutil.RequireMode(t, record, 0o600)
	if err := sp.Notify(t.Context(), notifytest.Message("old-2000")); err != nil {
		t.Fatal(err)
	}
	if got := messageIDs(target); !slices.Equal(got, []string{"new-1"}) {
		t.Errorf("delivered %v: a recorded ID was sent again", got)
	}
	if names := dirNames(t, dir); slices.ContainsFunc(names, func(n string) bool { return strings.HasSuffix(n, ".new") }) {
		t.Errorf("temporary left: %v", names)
	}
}
