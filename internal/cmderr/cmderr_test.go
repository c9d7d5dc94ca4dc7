package cmderr

import "testing"

func TestError(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{Args: []string{"git", "fetch"}, ExitCode: 128, Stderr: "fatal: no\n"}, "git fetch exited with status 128: fatal: no"},
		{Error{Args: []string{"pg_restore"}, ExitCode: 1}, "pg_restore exited with status 1"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
