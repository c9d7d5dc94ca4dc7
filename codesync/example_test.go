package codesync_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/restage/restage/codesync"
)

// Build a release from a folder, switch `current` to it, roll back, and prune.
func Example() {
	ctx := context.Background()
	base, _ := os.MkdirTemp("", "codesync-example-")
	defer os.RemoveAll(base)
	src := filepath.Join(base, "build")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "robots.txt"), []byte("Allow: /\n"), 0o644)
	os.WriteFile(filepath.Join(base, "robots-staging.txt"), []byte("Disallow: /\n"), 0o644)

	releases, err := codesync.New(codesync.Config{
		Releases: filepath.Join(base, "releases"),
		Current:  filepath.Join(base, "current"),
		Keep:     3,
		Exclude:  []string{".git"},
		Overlay:  map[string]string{"robots.txt": filepath.Join(base, "robots-staging.txt")},
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	source, err := codesync.NewDirSource(src)
	if err != nil {
		log.Fatal(err)
	}
	first, err := releases.Build(ctx, source)
	if err != nil {
		log.Fatal(err)
	}
	releases.Activate(ctx, first)
	second, _ := releases.Build(ctx, source) // unchanged files are hard-linked from first
	previous, _ := releases.Activate(ctx, second)
	robots, _ := os.ReadFile(filepath.Join(base, "current", "robots.txt"))
	fmt.Printf("active: second; previous is first: %v; robots.txt: %s", previous.ID == first.ID, robots)

	// The health check failed: back to the first release.
	back, _ := releases.Rollback(ctx)
	fmt.Println("rolled back to first:", back.ID == first.ID)
	list, _ := releases.List(ctx)
	for _, r := range list {
		fmt.Println(r.State, r.Files, "files,", r.Linked, "linked")
	}
	releases.Prune(ctx) // the failed second release goes first
	list, _ = releases.List(ctx)
	fmt.Println(len(list), "release left")
	// Output:
	// active: second; previous is first: true; robots.txt: Disallow: /
	// rolled back to first: true
	// active 1 files, 0 linked
	// failed 1 files, 0 linked
	// 1 release left
}
