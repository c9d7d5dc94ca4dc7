package train_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/staging/stagingtest"
)

// The test binary doubles as the bug tracker's web app (the service of staging and
// production).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == stagingtest.AppCommand {
		if err := stagingtest.ServeApp(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}
