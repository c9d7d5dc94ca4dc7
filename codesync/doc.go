// Package codesync puts code trees in place as releases and activates them atomically.
//
// A Source (a folder, or a git repository at a ref) delivers a tree; a Syncer copies it into
// releases/<id>.partial, hard-linking files unchanged since the previous release, installs
// overlay files (staging's robots.txt), renames it to releases/<id> when complete, and
// switches the `current` symlink to it with a rename, so `current` is never missing or
// half-written. It rolls back to the previous good release and prunes old ones.
package codesync
