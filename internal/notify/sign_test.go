package notify

import "testing"

func TestVerify(t *testing.T) {
	body := []byte(`{"event":"succeeded"}`)
	sig := Sign("k3y", body)
	if !Verify("k3y", body, sig) {
		t.Fatal("a signature made with the key does not verify")
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
	}{
		"changed body":  {"k3y", sig, []byte(`{"event":"failed"}`)},
		"other secret":  {"other", sig, body},
		"empty secret":  {"", Sign("", body), body},
		"no prefix":     {"k3y", sig[len("sha256="):], body},
		"sha1 prefix":   {"k3y", "sha1=" + sig[len("sha256="):], body},
		"not hex":       {"k3y", "sha256=zz", body},
		"empty header":  {"k3y", "", body},
		"truncated sum": {"k3y", sig[:len(sig)-2], body},
	} {
		if Verify(c.secret, c.body, c.header) {
			t.Errorf("%s: verified", name)
		}
	}
}
