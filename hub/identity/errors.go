package identity

import (
	"fmt"
	"net/http"
	"strings"
)

// Error is a refusal meant for the client: an HTTP status, a stable code
// and a message safe to show. Other errors are internal and shown as
// "internal error".
type Error struct {
	Status   int
	Code     string
	Msg      string
	Problems []string // password_policy: every rule broken
}

func (e *Error) Error() string { return e.Msg }

func refusal(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *Error {
	return refusal(http.StatusBadRequest, "bad_request", format, args...)
}

func notFound(format string, args ...any) *Error {
	return refusal(http.StatusNotFound, "not_found", format, args...)
}

func conflict(format string, args ...any) *Error {
	return refusal(http.StatusConflict, "conflict", format, args...)
}

func forbidden(format string, args ...any) *Error {
	return refusal(http.StatusForbidden, "forbidden", format, args...)
}

func policyError(problems []string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "password_policy",
		Msg: "password does not meet the policy: " + strings.Join(problems, "; "), Problems: problems}
}

// clip shortens what a caller sent before it is echoed in an error or
// recorded.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return strings.ToValidUTF8(s[:64], "") + "…"
}
