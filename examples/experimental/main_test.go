package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "experimental.toml")
	if err := os.WriteFile(cfg, []byte("environment = \"experimental\"\nbogus = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "-config FILE is required"},
		{[]string{"-config", cfg, "-source", "a", "-git", "b", "-ref", "c"}, "exclusive"},
		{[]string{"-config", cfg, "-git", "repo"}, "needs -ref"},
		{[]string{"-config", cfg, "-ref", "main"}, "needs -git"},
		{[]string{"-config", cfg}, "unknown key bogus"},
	} {
		var out, errs bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errs)
		if exitCode(err) != 2 || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: exit %d, err %v; want 2 and %q", tc.args, exitCode(err), err, tc.want)
		}
	}
}

func TestRequester(t *testing.T) {
	t.Setenv("USER", "alice")
	if got := requester(); got != "alice" {
		t.Fatalf("requester = %q", got)
	}
}
