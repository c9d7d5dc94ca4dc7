// Package codesynctest checks that a codesync.Syncer and a codesync.Source keep the
// promises of their interfaces, and provides Fake, an in-memory Syncer for tests of code
// that builds and activates releases.
//
// Syncer is the conformance suite that codesync.SymlinkSyncer and Fake run; Source is the
// one codesync.DirSource and codesync.GitSource run. A third-party implementation runs
// them in its own tests:
//
//	func TestMySyncerConformance(t *testing.T) {
//		codesynctest.Syncer(t, codesynctest.Fixture{
//			Keep: 2,
//			New: func(t *testing.T) codesync.Syncer {
//				return mysyncer.New(mysyncer.Config{Root: t.TempDir(), Keep: 2})
//			},
//		})
//	}
//
//	func TestMySourceConformance(t *testing.T) {
//		codesynctest.Source(t, codesynctest.SourceFixture{
//			New: func(t *testing.T, files map[string]string) codesync.Source {
//				return mysource.New(uploadTree(t, files))
//			},
//			Missing: func(t *testing.T) codesync.Source { return mysource.New("no-such-tree") },
//		})
//	}
//
// Fake keeps releases in memory (Release.Dir is empty; ReadFile reads their files) and
// lets function fields make Build or Activate fail:
//
//	releases := &codesynctest.Fake{ActivateFunc: func(context.Context, *codesync.Release) error {
//		return errors.New("disk full") // the cutover fails; current stays where it was
//	}}
package codesynctest
