package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// SignatureHeader carries the body's HMAC-SHA256 when the webhook has a
// secret, as GitHub's X-Hub-Signature-256 does.
const SignatureHeader = "X-Zerodown-Signature"

// Sign returns the X-Zerodown-Signature value for body: "sha256=" and the
// hex HMAC-SHA256 of the exact bytes sent, keyed with secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether header is a valid X-Zerodown-Signature of body
// under secret. It compares in constant time, so a receiver that copies it
// leaks nothing of the expected signature through timing. An empty secret
// never verifies: anyone can compute an HMAC with an empty key.
func Verify(secret string, body []byte, header string) bool {
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok || secret == "" {
		return false
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
