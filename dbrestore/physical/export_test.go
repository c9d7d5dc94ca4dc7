package physical

// TreeSum is treeSum, for tests that write a base backup's manifest themselves.
var TreeSum = treeSum
