package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/secretfile"
)

// signIn takes a token from the sign-in form and answers with the session
// cookie: HttpOnly (no script reads it), SameSite=Strict (no other site's
// page sends it), Secure over TLS. The token itself never goes into the
// cookie.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) error {
	if !sameOrigin(r) {
		return &httpError{status: http.StatusForbidden, code: "csrf", err: errors.New("cross-site sign-in refused")}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	c, err := s.checkToken(r.Context(), strings.TrimSpace(r.PostFormValue("token")))
	if err != nil {
		return err
	}
	expires := s.now().Add(time.Duration(s.cfg.SessionTTL))
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: newSession(s.sessionKey, c.token, expires), Path: "/", Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	s.audit(r.Context(), r, c.name(), "session.create", "", "signed in to the dashboard")
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
	return nil
}

// signOut ends the session in this browser (the cookie is removed).
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, c *caller) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	s.audit(r.Context(), r, c.name(), "session.end", "", "signed out of the dashboard")
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}

// secure reports whether the browser reached the server over TLS: its own,
// or a proxy's in front of it (allow_plaintext) that says so.
func (s *Server) secure(r *http.Request) bool {
	return s.cfg.TLS != nil || r.TLS != nil || s.cfg.AllowPlaintext && r.Header.Get("X-Forwarded-Proto") == "https"
}

// sessionKeyBytes is the least length of a session key.
const sessionKeyBytes = 32

// loadSessionKey reads the session key at path, or, when the file does not
// exist, makes one and writes it there (0600), for a single server. Every
// replica must read the same key: the config asks for the file with
// postgres.
func loadSessionKey(path string) ([]byte, error) {
	key, _, err := secretfile.Load(path, sessionKeyBytes, 0o750)
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return []byte(key), nil
}
