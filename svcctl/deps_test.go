package svcctl_test

import (
	"strings"
	"testing"

	"github.com/restage/restage/internal/testutil"
)

// heavyDependency reports whether pkg belongs to the Docker Engine client, which only
// svcctl/docker may bring.
func heavyDependency(pkg string) bool {
	for _, prefix := range []string{"github.com/moby/", "github.com/docker/", "github.com/containerd/", "go.opentelemetry.io/"} {
		if strings.HasPrefix(pkg, prefix) {
			return true
		}
	}
	return false
}

// TestNoDockerDependencies: svcctl, and svctest with it, link none of the Docker Engine
// client (moby, containerd, OpenTelemetry); a program that controls its service through
// systemd or a pidfile does not pay for the Docker driver (svcctl/docker).
func TestNoDockerDependencies(t *testing.T) {
	for _, pkg := range []string{"github.com/restage/restage/svcctl", "github.com/restage/restage/svcctl/svctest"} {
		deps := testutil.Deps(t, pkg)
		var heavy []string
		for _, dep := range deps {
			if heavyDependency(dep) {
				heavy = append(heavy, dep)
			}
		}
		if len(heavy) > 0 {
			t.Errorf("%s links %d packages of the Docker client (only svcctl/docker may):\n%s", pkg, len(heavy), strings.Join(heavy, "\n"))
		}
	}
}

func TestHeavyDependency(t *testing.T) {
	for pkg, want := range map[string]bool{
		"github.com/moby/moby/client":                true,
		"github.com/containerd/errdefs":              true,
		"github.com/docker/go-connections/sockets":   true,
		"go.opentelemetry.io/otel/trace":             true,
		"github.com/restage/restage/svcctl/docker":   false,
		"github.com/restage/restage/internal/cmderr": false,
		"net/http": false,
		"github.com/restage/restage/internal/redact": false,
	} {
		if heavyDependency(pkg) != want {
			t.Errorf("heavyDependency(%q) = %v", pkg, !want)
		}
	}
}
