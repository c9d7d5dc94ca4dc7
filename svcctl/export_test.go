package svcctl

// The test helpers the external tests (package svcctl_test) need: those run svctest's
// suites, and svctest imports svcctl, so they cannot be in package svcctl.
var (
	TestBinary       = testBinary
	NewTag           = newTag
	ServiceEnv       = serviceEnv
	TaggedProcesses  = taggedProcesses
	RequireNoOrphans = requireNoOrphans
	NewFakeSystemd   = newFakeSystemd
)

// FakeUnit describes a unit of the fake systemd.
type FakeUnit = fakeUnit

// EnvRole and EnvTag name the variables that choose the test binary's part and mark the
// processes of one test.
const (
	EnvRole = envRole
	EnvTag  = envTag
)
