package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zerodown/zerodown/internal/server/api"
	"github.com/zerodown/zerodown/internal/store"
)

// Role is what a token may do. Each role may do everything the roles
// before it may: viewer < deployer < approver < admin.
type Role int

// Roles.
const (
	RoleNone Role = iota
	// RoleViewer reads: environments, hosts, runs, events, reports, metrics.
	RoleViewer
	// RoleDeployer also uploads artifacts, starts, promotes, aborts and
	// rolls back runs.
	RoleDeployer
	// RoleApprover also approves manual gates and ends canaries early.
	RoleApprover
	// RoleAdmin also manages tokens and reads the audit log.
	RoleAdmin
)

var roleNames = [...]string{"", "viewer", "deployer", "approver", "admin"}

func (r Role) String() string {
	if r < 0 || int(r) >= len(roleNames) {
		return "unknown"
	}
	return roleNames[r]
}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	for i, n := range roleNames {
		if i > 0 && n == s {
			return Role(i), nil
		}
	}
	return RoleNone, fmt.Errorf("unknown role %q (viewer, deployer, approver or admin)", s)
}

// Token strings look like "zdt_<id>_<secret>": the id finds the stored
// token, the secret is checked against its hash.
const tokenPrefix = "zdt_"

// NewToken makes a token: the string to hand out once, and the record to
// store, which keeps only the secret's hash.
func NewToken(name string, role Role, by string) (secret string, t store.Token, err error) {
	if role == RoleNone {
		return "", store.Token{}, errors.New("a token needs a role")
	}
	var id [6]byte
	var sec [24]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", store.Token{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return "", store.Token{}, err
	}
	t = store.Token{ID: hex.EncodeToString(id[:]), Name: name, Role: role.String(), CreatedBy: by}
	s := base64.RawURLEncoding.EncodeToString(sec[:])
	sum := sha256.Sum256([]byte(s))
	t.Hash = sum[:]
	return tokenPrefix + t.ID + "_" + s, t, nil
}

// caller is who makes a request.
type caller struct {
	token store.Token
	role  Role
	// session: signed in with the dashboard's cookie, not a bearer token;
	// its state-changing requests need the CSRF token.
	session string
}

func (c *caller) name() string { return c.token.Name }

// authError is a problem with the credentials (401); any other error of
// authenticate is the store's.
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

var (
	errNoCredentials = &authError{"this needs a token: send Authorization: Bearer zdt_…, or sign in"}
	errBadToken      = &authError{"the token is not valid (unknown, wrong or revoked)"}
	errExpired       = &authError{"the session has expired: sign in again"}
	errNotBearer     = &authError{"Authorization must be Bearer zdt_…"}
)

// checkToken finds and checks a token string.
func (s *Server) checkToken(ctx context.Context, tok string) (*caller, error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	id, secret, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || id == "" || secret == "" {
		return nil, errBadToken
	}
	t, err := s.st.GetToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(sum[:], t.Hash) != 1 || !t.RevokedAt.IsZero() {
		return nil, errBadToken
	}
	role, err := ParseRole(t.Role)
	if err != nil {
		return nil, errBadToken
	}
	return &caller{token: t, role: role}, nil
}

// sessionCookie is the dashboard's sign-in.
const sessionCookie = "zerodown_session"

// A session is "<token id>.<expiry unix>.<mac>", the MAC keyed by the
// server's session key (session_key_file, the same on every replica) over
// the token's stored hash too: any replica checks it without a session
// table, revoking the token ends its sessions, and a copy of the database
// alone cannot forge one.
func sessionMAC(key []byte, t store.Token, msg string) string {
	m := hmac.New(sha256.New, key)
	m.Write(t.Hash)
	m.Write([]byte("|" + msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func newSession(key []byte, t store.Token, expires time.Time) string {
	msg := t.ID + "." + strconv.FormatInt(expires.Unix(), 10)
	return msg + "." + sessionMAC(key, t, "session|"+msg)
}

// csrfToken is the token a signed-in page sends back with every change:
// derived from the session, so it needs no storage either.
func (s *Server) csrfToken(c *caller) string {
	if c == nil || c.session == "" {
		return ""
	}
	return sessionMAC(s.sessionKey, c.token, "csrf|"+c.session)
}

func (s *Server) checkSession(ctx context.Context, v string) (*caller, error) {
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return nil, errBadToken
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Unix(exp, 0).Before(s.now()) {
		return nil, errExpired
	}
	t, err := s.st.GetToken(ctx, parts[0])
	if errors.Is(err, store.ErrNotFound) {
		return nil, errBadToken
	}
	if err != nil {
		return nil, err
	}
	want := sessionMAC(s.sessionKey, t, "session|"+parts[0]+"."+parts[1])
	if !hmac.Equal([]byte(want), []byte(parts[2])) || !t.RevokedAt.IsZero() {
		return nil, errBadToken
	}
	role, err := ParseRole(t.Role)
	if err != nil {
		return nil, errBadToken
	}
	return &caller{token: t, role: role, session: v}, nil
}

// authenticate finds the caller: a bearer token first, else the session
// cookie. Neither gives errNoCredentials.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok {
			return nil, errNotBearer
		}
		return s.checkToken(r.Context(), strings.TrimSpace(tok))
	}
	if ck, err := r.Cookie(sessionCookie); err == nil && ck.Value != "" {
		return s.checkSession(r.Context(), ck.Value)
	}
	return nil, errNoCredentials
}

// safeMethod: reads, which change nothing and need no CSRF token.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// checkCSRF guards a state-changing request made with the session cookie:
// it must carry the session's CSRF token (header X-CSRF-Token or form field
// csrf) and, when the browser says where it comes from, come from this
// site. SameSite=Strict already keeps the cookie off cross-site requests;
// this holds even where a browser does not honour it.
func (s *Server) checkCSRF(r *http.Request, c *caller) error {
	if c.session == "" || safeMethod(r.Method) {
		return nil
	}
	if !sameOrigin(r) {
		return errors.New("cross-site request refused")
	}
	got := r.Header.Get("X-CSRF-Token")
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); got == "" && ct == "application/x-www-form-urlencoded" {
		// The dashboard's forms; any other body (an upload) is not read
		// here.
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		got = r.PostFormValue("csrf")
	}
	if want := s.csrfToken(c); got == "" || !hmac.Equal([]byte(got), []byte(want)) {
		return errors.New("missing or wrong CSRF token: reload the page")
	}
	return nil
}

// sameOrigin reports whether a browser's request comes from this site, by
// Sec-Fetch-Site or Origin; requests that send neither (not a browser) pass.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// audit writes an action to the audit log.
func (s *Server) audit(ctx context.Context, r *http.Request, actor, action, target, detail string) {
	remote := ""
	if r != nil {
		remote = r.RemoteAddr
	}
	if err := writeAudit(ctx, s.st, store.AuditEntry{Actor: actor, Action: action, Target: target, Detail: detail, Remote: remote}); err != nil {
		s.log.Error("audit log", "action", action, "target", target, "err", err)
	}
}

// Audit writes an action taken outside the API (the command line) to the
// audit log; a failure is said on stderr, never hidden.
func Audit(ctx context.Context, st store.Store, actor, action, target, detail string) {
	if err := writeAudit(ctx, st, store.AuditEntry{Actor: actor, Action: action, Target: target, Detail: detail}); err != nil {
		fmt.Fprintf(os.Stderr, "warning: audit log: %v\n", err)
	}
}

func writeAudit(ctx context.Context, st store.Store, e store.AuditEntry) error {
	_, err := st.AppendAudit(context.WithoutCancel(ctx), e)
	return err
}

func tokenJSON(t store.Token) api.Token {
	out := api.Token{ID: t.ID, Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, CreatedBy: t.CreatedBy}
	if !t.RevokedAt.IsZero() {
		r := t.RevokedAt
		out.RevokedAt = &r
	}
	return out
}
