package childenv

import (
	"slices"
	"strings"
	"testing"
)

func TestEnvPassesOnlyWhatIsNamed(t *testing.T) {
	t.Setenv("SMTP_PASSWORD", "hunter2")
	t.Setenv("PGPASSWORD", "hunter3")
	t.Setenv("PGSSLMODE", "require")
	t.Setenv("LC_TIME", "C")
	t.Setenv("PATH", "/usr/bin")
	env := Env(LibPQ, "APP=1", "PATH=/opt/bin")
	for _, kv := range env {
		if strings.Contains(kv, "hunter") {
			t.Errorf("a secret reached the child: %s", kv)
		}
	}
	for _, want := range []string{"PGSSLMODE=require", "LC_TIME=C", "PATH=/usr/bin", "APP=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("env lacks %s: %q", want, env)
		}
	}
	if env[len(env)-1] != "PATH=/opt/bin" {
		t.Errorf("extra entries must come last (later wins): %q", env)
	}
	if slices.Contains(Env(nil), "PGSSLMODE=require") {
		t.Error("libpq's settings reached a child that did not ask for them")
	}
}
