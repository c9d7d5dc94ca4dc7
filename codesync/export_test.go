package codesync

import "testing"

// Test helpers of package codesync for its external tests (package codesync_test, which
// may import codesynctest).

// GitRepoForTest returns a git repository whose branch main holds files; it skips the
// test when git is not installed.
func GitRepoForTest(tb testing.TB, files map[string]string) string {
	tb.Helper()
	g := newGitRepo(tb)
	g.commit("files", files)
	return g.dir
}

// BlockMetadataWritesForTest makes every write of release r's metadata file fail; the
// returned function undoes it.
func BlockMetadataWritesForTest(tb testing.TB, r *Release) func() {
	tb.Helper()
	return failMetadataWrites(tb, r)
}

// WriteTreeForTest writes files (slash-separated path: content) into a new folder and
// returns it.
func WriteTreeForTest(tb testing.TB, files map[string]string) string {
	tb.Helper()
	dir := tb.TempDir()
	writeTree(tb, dir, files)
	return dir
}
