package deploy

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/zerodown/zerodown/internal/agent"
	"github.com/zerodown/zerodown/internal/lb/builtin"
)

// InputError is a problem with what the user gave — the config, the
// arguments, the artifact, a token — found before anything changed. The CLI
// exits 2 for it.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func badInput(err error) error { return &InputError{Err: err} }

// RefusedError is a run that did not start because another holds the
// environment. The CLI exits 1 for it.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return "deploy refused: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// deniedCodes are AWS's error codes for credentials or a permission
// refused: like a refused token, the config's (or the IAM policy's) to fix.
var deniedCodes = map[string]bool{
	"AccessDenied": true, "AccessDeniedException": true, "UnauthorizedOperation": true,
	"InvalidClientTokenId": true, "SignatureDoesNotMatch": true, "UnrecognizedClientException": true,
	"ExpiredToken": true, "MissingAuthenticationToken": true,
}

// AccessRefused reports whether err is an agent or load balancer refusing
// the token it was given, or AWS refusing the credentials or a permission.
func AccessRefused(err error) bool {
	var coded interface{ ErrorCode() string }
	if errors.As(err, &coded) && deniedCodes[coded.ErrorCode()] {
		return true
	}
	var ae *agent.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
		return true
	}
	var be *builtin.APIError
	return errors.As(err, &be) && (be.Status == http.StatusUnauthorized || be.Status == http.StatusForbidden)
}

// classify turns a refused token into bad input that says so.
func classify(what string, err error) error {
	if AccessRefused(err) {
		return badInput(fmt.Errorf("%s: the token was refused (check token or token_file): %w", what, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}
