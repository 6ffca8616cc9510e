package server

import "testing"

func TestSafeNext(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/runs?env=staging", "/runs?env=staging"},
		{"/runs/r-1", "/runs/r-1"},
		{"", "/"},
		{"runs", "/"},
		{"//evil.example", "/"},
		{"/\\evil.example", "/"},
		{"/\t/evil.example", "/"},
		{"/%09/evil.example", "/%09/evil.example"}, // stays a path: the browser decodes nothing here
		{"/\n/evil.example", "/"},
		{"https://evil.example/", "/"},
		{"/\x7f", "/"},
	} {
		if got := safeNext(tc.in); got != tc.want {
			t.Errorf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
