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

func TestTail(t *testing.T) {
	for _, tc := range []struct {
		in               string
		maxBytes, maxLen int
		want             string
	}{
		{"a\nb\nc\n\n", 100, 10, "a\nb\nc"},
		{"a\nb\nc\n", 100, 2, "b\nc"},
		{"first line\nsecond\n", 10, 10, "second"}, // the cut starts at a line start
		{"abcdefghij", 4, 10, "ghij"},              // one line longer than the bound
	} {
		if got := Tail([]byte(tc.in), tc.maxBytes, tc.maxLen); got != tc.want {
			t.Errorf("Tail(%q, %d, %d) = %q, want %q", tc.in, tc.maxBytes, tc.maxLen, got, tc.want)
		}
	}
}
