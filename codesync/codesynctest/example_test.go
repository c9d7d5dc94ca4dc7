package codesynctest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/restage/restage/codesync"
	"github.com/restage/restage/codesync/codesynctest"
)

// A cutover whose activation fails: current stays on the release that was live.
func ExampleFake() {
	dir, err := os.MkdirTemp("", "codesynctest-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte("print(1)\n"), 0o644); err != nil {
		panic(err)
	}
	ctx := context.Background()
	releases := &codesynctest.Fake{}
	src := &codesync.DirSource{Path: dir}
	first, _ := releases.Build(ctx, src)
	if _, err := releases.Activate(ctx, first); err != nil {
		panic(err)
	}
	second, _ := releases.Build(ctx, src)
	releases.ActivateFunc = func(context.Context, *codesync.Release) error {
		return errors.New("disk full")
	}
	_, err = releases.Activate(ctx, second)
	cur, _ := releases.Current(ctx)
	app, _ := releases.ReadFile(cur, "app.py")
	fmt.Printf("activate: %v; current is the first release: %v; app.py: %s", err, cur.ID == first.ID, app)
	// Output:
	// activate: disk full; current is the first release: true; app.py: print(1)
}
