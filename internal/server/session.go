package server

import (
	"errors"
	"net/http"
	"strings"
	"time"
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
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: newSession(c.token, expires), Path: "/", Expires: expires,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.cfg.TLS != nil})
	s.audit(r.Context(), r, c.name(), "session.create", "", "signed in to the dashboard")
	next := r.PostFormValue("next")
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return nil
}

// signOut ends the session in this browser (the cookie is removed).
func (s *Server) signOut(w http.ResponseWriter, r *http.Request, c *caller) error {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.cfg.TLS != nil})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
	return nil
}
