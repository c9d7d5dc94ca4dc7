package environment

import (
	"testing"

	"github.com/restage/restage/staging"
	"github.com/restage/restage/staging/dockerservice"
)

// TestDrivers: the binaries' drivers are staging's built-in ones and docker.
func TestDrivers(t *testing.T) {
	d := Drivers()
	for name := range staging.DefaultDrivers().Services {
		if d.Services[name] == nil {
			t.Errorf("service type %q missing", name)
		}
	}
	keys, ok := d.Services["docker"]
	if !ok {
		t.Fatal("service type docker missing")
	}
	if _, ok := keys().(*dockerservice.Config); !ok {
		t.Errorf("docker keys are %T", keys())
	}
}
