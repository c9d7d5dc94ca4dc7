// Package svctest is the conformance suite of svcctl's interfaces, for tests: Controller
// runs the checks every svcctl.Controller must pass against a driver (svcctl's own, the
// Docker one, a third party's, a fake), Checker does the same for a svcctl.Checker, and
// Fake is an in-memory Controller with function fields for tests of code that uses one.
//
// A driver runs the suite in its own tests. The fixture makes a fresh, stopped service
// for each check and says how to ask the service itself whether it runs, so that the
// suite compares what the controller says with the truth:
//
//	func TestConformance(t *testing.T) {
//		svctest.Controller(t, svctest.Fixture{
//			New: func(t *testing.T) svctest.Service {
//				addr := freeAddr(t)
//				c, err := mydriver.New(mydriver.Config{Unit: newTestUnit(t, "app", addr)})
//				if err != nil {
//					t.Fatal(err)
//				}
//				t.Cleanup(func() { _ = c.Stop(context.WithoutCancel(t.Context())) })
//				return svctest.Service{
//					Controller: c,
//					Running:    svctest.HTTPProbe("http://" + addr + "/health"),
//					Kill:       func(t *testing.T) { killTestUnit(t, "app") },
//					Health:     svcctl.HTTPCheck{URL: "http://" + addr + "/health"},
//				}
//			},
//			Exiting: func(t *testing.T) svctest.Service { ... a unit that exits at once ... },
//			PID:     true,
//		})
//	}
//
// Code that takes a svcctl.Controller is tested with a Fake:
//
//	svc := &svctest.Fake{StartFunc: func(context.Context) error {
//		return fmt.Errorf("bind: address in use: %w", svcctl.ErrExited)
//	}}
//	err := rebuild(ctx, svc) // must report the failed start and leave things as they were
//
// The package imports testing; programs must not link it, only their tests.
package svctest
