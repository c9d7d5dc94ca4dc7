// Package train is the weekly release train (DESIGN.md, examples/train): every Monday
// the staging branch goes to production (staging.Rebuilder.Promote, with a config whose
// role is "production"), devel's head becomes the new staging branch (Cut), and staging's
// nightly rebuild picks it up (or Cut's caller rebuilds at once, RebuildStaging); Status
// says where every environment stands.
//
//	c, err := train.Load("/etc/restage/train.toml")
//	if err != nil {
//		return err // names the key
//	}
//	t, err := train.Open(c, train.Options{})
//	if err != nil {
//		return err
//	}
//	defer t.Close()
//	rep, err := t.Cut(ctx, train.CutOptions{RequestedBy: "alice"})
//	fmt.Print(rep.Text()) // the tag, what staging replaced, the commits it brought
//
// A cut works in a scratch clone with the git program (argv, never a shell), against a
// local bare repository or any remote git can push to. It refuses (and changes nothing)
// when staging has commits devel lacks (ErrBackwards), when the configured check fails
// in devel's tree (ErrCheck), or when the week's tag names another commit
// (ErrTagExists); it pushes the tag and the staging branch in one atomic push without
// force, and writes no other ref.
package train
