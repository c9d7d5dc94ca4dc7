package train_test

import (
	"context"
	"fmt"
	"log"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/train"
)

// The Monday train: production gets the staging branch, then devel becomes the new
// staging branch and staging is rebuilt from it at once.
func Example() {
	ctx := context.Background()

	prod, err := staging.LoadProduction("/etc/restage/production.toml", nil) // role = "production"
	if err != nil {
		log.Fatal(err) // names the key
	}
	rb, err := staging.OpenProduction(prod, staging.OpenOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer rb.Close()
	rep, err := rb.Promote(ctx, staging.PromoteOptions{RequestedBy: "alice"})
	if rep != nil {
		fmt.Print(rep.Text()) // the preflight, the migrations in place, the outage
	}
	if err != nil {
		log.Fatal(err) // errors.Is(err, staging.ErrPreflight): nothing changed
	}

	c, err := train.Load("/etc/restage/train.toml")
	if err != nil {
		log.Fatal(err)
	}
	t, err := train.Open(c, train.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer t.Close()
	cut, err := t.Cut(ctx, train.CutOptions{RequestedBy: "alice"})
	if cut != nil {
		fmt.Print(cut.Text()) // the tag, what staging was, the commits it brought
	}
	if err != nil {
		log.Fatal(err) // train.ErrBackwards, train.ErrCheck, train.ErrTagExists: nothing changed
	}
	if _, err := t.RebuildStaging(ctx, staging.OpenOptions{}); err != nil {
		log.Fatal(err)
	}
	st, err := t.Status(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(st.Text())
}
