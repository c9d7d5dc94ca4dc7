// Package codesync puts code trees in place as releases and activates them atomically.
//
// A Source (a folder, or a git repository at a ref) delivers a tree; a Syncer copies it into
// releases/<id>.partial, hard-linking files unchanged since the previous release, installs
// overlay files (staging's robots.txt), renames it to releases/<id> when complete, and
// switches the `current` symlink to it with a rename, so `current` is never missing or
// half-written. Activation is all or nothing: a failure after the switch puts `current`
// back as it was. It rolls back to the previous good release and prunes old ones.
//
// A GitSource exports through os.Root (a crafted tree cannot write outside its folder),
// runs git with an explicit environment (none of this process's secrets) and a bound on
// each command (GitSource.Timeout), and keeps the credentials of its URL out of every
// revision and error.
//
// Usage:
//
//	releases, err := codesync.New(codesync.Config{
//		Releases: "/srv/staging/releases",
//		Current:  "/srv/staging/current",
//		Exclude:  []string{".git"},
//		Overlay:  map[string]string{"robots.txt": "/etc/restage/robots-staging.txt"},
//	})
//	src := &codesync.GitSource{Repo: "/srv/build/launchpad", Ref: "main"}
//	r, err := releases.Build(ctx, src)         // releases/<id>, current untouched
//	previous, err := releases.Activate(ctx, r) // current -> releases/<id>
//	back, err := releases.Rollback(ctx)        // r failed; current -> previous good one
//	err = releases.Prune(ctx)                  // keep 3 good ones (failed ones go first)
//
// Each release holds a metadata file (MetadataFile, JSON: id, revision, created, state,
// file counts) in its root. Hard-linked files share their inode with older releases: the
// code tree must be treated as read-only by the program it contains (or set NoHardLinks).
//
// Package codesynctest holds the conformance suites every Syncer and Source runs, and
// Fake, an in-memory Syncer for tests.
package codesync
