package train_test

import (
	"os"
	"testing"

	"github.com/restage/restage/dbrestore/pgtest"
	"github.com/restage/restage/staging/stagingtest"
)

// The test binary doubles as the bug tracker's web app (the service of staging and
// production).
func TestMain(m *testing.M) {
	stagingtest.RunApp()
	os.Exit(pgtest.Main(m))
}
