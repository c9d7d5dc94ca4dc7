package svctest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/restage/restage/svcctl"
	"github.com/restage/restage/svcctl/svctest"
)

// A Fake stands in for the staging service in tests of code that controls it; its
// function fields inject the faults the code must survive.
func ExampleFake() {
	ctx := context.Background()
	svc := &svctest.Fake{StartFunc: func(context.Context) error {
		return fmt.Errorf("app: cannot open config: %w", svcctl.ErrExited)
	}}
	err := svcctl.StartHealthy(ctx, svc, nil)
	fmt.Println(errors.Is(err, svcctl.ErrExited), svc.Running(), svc.Starts())

	svc.StartFunc = nil // the next release is fixed
	err = svcctl.StartHealthy(ctx, svc, nil)
	st, _ := svc.Status(ctx)
	fmt.Println(err, st.State, svc.Starts())
	// Output:
	// true false 0
	// <nil> running 1
}
