package dockerservice_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/dockerservice"
)

const config = `
environment = "staging"
lock_file   = "staging.lock"
state_dir   = "state"
[database]
admin_dsn      = "postgres://postgres@db/postgres"
name           = "app"
production_ids = ["42"]
[code]
source   = "src"
releases = "releases"
current  = "current"
[service]
type         = "docker"
container    = %q
stop_timeout = "5s"
`

func write(t *testing.T, container string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "staging.toml")
	if err := os.WriteFile(p, []byte(strings.Replace(config, "%q", `"`+container+`"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRegisteredWithOneLine(t *testing.T) {
	d := staging.DefaultDrivers()
	d.Services["docker"] = dockerservice.Keys
	c, err := staging.LoadEnvironmentWith(write(t, "app"), d)
	if err != nil {
		t.Fatal(err)
	}
	keys, ok := c.Service.Keys.(map[string]any)
	if !ok || keys["container"] != "app" {
		t.Fatalf("keys %#v", c.Service.Keys)
	}
	if _, err := staging.LoadEnvironment(write(t, "app")); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), `service.type "docker"`) {
		t.Fatalf("without the driver: %v", err)
	}
	if _, err := staging.LoadEnvironmentWith(write(t, ""), d); !errors.Is(err, staging.ErrConfig) || !strings.Contains(err.Error(), "service.container") {
		t.Fatalf("without a container: %v", err)
	}
}
