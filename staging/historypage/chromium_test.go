package historypage_test

import (
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

var (
	discard = slog.New(slog.NewTextHandler(io.Discard, nil))

	screenshotCopy = flag.String("screenshot", "", "with TestChromiumScreenshot: copy the 30 nights' screenshot to `file` (docs/history.png)")
)

// requireChromiumEnv turns a missing Chromium from a skip into a failure (CI sets it).
const requireChromiumEnv = "RESTAGE_REQUIRE_CHROMIUM"

// chromium returns the path of Debian's chromium, or skips the test saying why (fails
// it with RESTAGE_REQUIRE_CHROMIUM=1).
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv(requireChromiumEnv) == "1" {
		t.Fatalf("%s=1 but there is no chromium on PATH (apt-get install chromium)", requireChromiumEnv)
	}
	t.Skipf("no chromium on PATH (Debian's package chromium): the page is not looked at in a browser; %s=1 makes this a failure", requireChromiumEnv)
	return ""
}

// screenshot opens page (an HTML file) in headless Chromium, 1280×2000, and returns the
// screenshot.
func screenshot(t testing.TB, browser, page string) image.Image {
	t.Helper()
	dir := t.TempDir()
	shot := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--no-first-run", "--user-data-dir="+filepath.Join(dir, "profile"),
		"--screenshot="+shot, "--window-size=1280,2000", "file://"+page)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("chromium wrote no screenshot: %v\n%s", err, out)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("the screenshot is no PNG: %v", err)
	}
	return img
}

// colours counts the pixels of each colour of img.
func colours(img image.Image) map[color.RGBA]int {
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[color.RGBA{R: uint8(r >> 8), G: uint8(g >> 8), B: uint8(bl >> 8), A: 0xff}]++
		}
	}
	return counts
}

// The colours of the plots' largest areas: a browser that drew the plots shows many
// pixels of each.
var plotColours = map[string]color.RGBA{
	"restore":     {0x4e, 0x79, 0xa7, 0xff},
	"schema":      {0xf2, 0x8e, 0x2b, 0xff},
	"downtime ok": {0x59, 0xa1, 0x4f, 0xff},
	"failed":      {0xe1, 0x57, 0x59, 0xff},
}

// TestChromiumScreenshot renders the page of 30 recorded nights, opens it in headless
// Chromium, and checks what a person would see: a screenshot of the right size with
// many colours, the plots' colours over large areas, and none of them on the page of an
// empty history.
func TestChromiumScreenshot(t *testing.T) {
	browser := chromium(t)
	_, reports := record(t, 30)
	dir := t.TempDir()
	page := filepath.Join(dir, "history.html")
	if err := os.WriteFile(page, []byte(render(t, reports, options(reports))), 0o644); err != nil {
		t.Fatal(err)
	}
	img := screenshot(t, browser, page)
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 2000 {
		t.Fatalf("screenshot %v, want 1280×2000", b)
	}
	counts := colours(img)
	if len(counts) < 500 {
		t.Errorf("the screenshot has %d colours: not a page with text and plots", len(counts))
	}
	var most int
	for _, n := range counts {
		most = max(most, n)
	}
	if most > 1280*2000*9/10 {
		t.Errorf("one colour covers %d of %d pixels", most, 1280*2000)
	}
	t.Logf("the screenshot: %d colours; plot colours %v", len(counts), func() map[string]int {
		m := map[string]int{}
		for name, c := range plotColours {
			m[name] = counts[c]
		}
		return m
	}())
	for name, c := range plotColours {
		if n := counts[c]; n < 1000 {
			t.Errorf("%d pixels of the plots' %s colour %v, want the plots drawn", n, name, c)
		}
	}

	// The same checks see no plot on the page of an empty history.
	empty := filepath.Join(dir, "empty.html")
	if err := os.WriteFile(empty, []byte(render(t, nil, options(nil))), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyCounts := colours(screenshot(t, browser, empty))
	for name, c := range plotColours {
		if n := emptyCounts[c]; n > 0 {
			t.Errorf("the empty page has %d pixels of the %s colour", n, name)
		}
	}

	if *screenshotCopy != "" {
		f, err := os.Create(*screenshotCopy)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", *screenshotCopy)
	}
}

// TestChromiumRequired: RESTAGE_REQUIRE_CHROMIUM=1 without a chromium is a failure, not
// a skip.
func TestChromiumRequired(t *testing.T) {
	tb := &recorder{TB: t}
	t.Setenv("PATH", t.TempDir())
	t.Setenv(requireChromiumEnv, "1")
	done := make(chan struct{})
	go func() { // Fatalf and Skipf end the goroutine, as they end a test
		defer close(done)
		chromium(tb)
	}()
	<-done
	if !tb.failed || tb.skipped || !strings.Contains(tb.msg, "apt-get install chromium") {
		t.Errorf("without chromium, required: failed %v, skipped %v, %q", tb.failed, tb.skipped, tb.msg)
	}

	tb = &recorder{TB: t}
	t.Setenv(requireChromiumEnv, "")
	done = make(chan struct{})
	go func() {
		defer close(done)
		chromium(tb)
	}()
	<-done
	if tb.failed || !tb.skipped || !strings.Contains(tb.msg, "no chromium on PATH") {
		t.Errorf("without chromium, not required: failed %v, skipped %v, %q", tb.failed, tb.skipped, tb.msg)
	}
}

// recorder is a testing.TB that records Fatalf and Skipf and ends the goroutine.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
