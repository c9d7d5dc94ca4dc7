package physical

// TreeSum is treeSum, for tests that write a base backup's manifest themselves.
var TreeSum = treeSum

// CountSyncs counts syncFS calls until the test ends.
func CountSyncs(t interface{ Cleanup(func()) }) *int {
	n, orig := new(int), syncFS
	syncFS = func(dir string) error { *n++; return orig(dir) }
	t.Cleanup(func() { syncFS = orig })
	return n
}
