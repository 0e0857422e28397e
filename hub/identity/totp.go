package identity

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// TOTP as authenticator apps do it (RFC 6238): SHA-1, six digits, 30 s
// steps, one step of clock skew either way.
const (
	totpPeriod    = 30
	totpSkew      = 1
	recoveryCount = 10
)

// errCodeWrong refuses a code given in a session (not at login, where a
// wrong code is a 401).
var errCodeWrong = refusal(http.StatusBadRequest, "totp_invalid", "the code is wrong, used already or out of time; check the clock of your device")

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// matchTOTP finds the time step whose code is code, among the steps
// around now that come after last, so that no code is accepted twice.
func matchTOTP(secret, code string, now time.Time, last int64) (int64, bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	for step := cur - totpSkew; step <= cur+totpSkew; step++ {
		if step <= last {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, true
		}
	}
	return 0, false
}

// TOTPSetup is a new TOTP key, to be confirmed with a code from it.
type TOTPSetup struct {
	Secret string `json:"secret"`      // base32, for typing in
	URL    string `json:"otpauth_url"` // otpauth://totp/...
	QRPNG  string `json:"qr_png"`      // the URL as a QR code: a PNG data URL
}

// totpSetup makes a TOTP key for the account, pending until confirmed. An
// account that has TOTP already must have it reset by a security admin:
// a stolen session must not be able to replace the second factor.
func (s *Service) totpSetup(ctx context.Context, actor Actor) (TOTPSetup, error) {
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: s.cfg.TOTPIssuer, AccountName: actor.Name, Period: totpPeriod, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("identity: totp key: %w", err)
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("identity: totp qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return TOTPSetup{}, fmt.Errorf("identity: totp qr code: %w", err)
	}
	_, err = s.modifyAccount(ctx, actor.Name, func(r *AccountRecord) error {
		if r.TOTPSecret != "" {
			return conflict("a second factor is enrolled already; a security admin can reset it")
		}
		r.TOTPPending = key.Secret()
		return nil
	}, nil)
	if err != nil {
		return TOTPSetup{}, err
	}
	return TOTPSetup{
		Secret: key.Secret(), URL: key.URL(),
		QRPNG: "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes()),
	}, nil
}

// totpConfirm enables the pending key when code comes from it, and
// returns new recovery codes: the only time they are shown.
func (s *Service) totpConfirm(ctx context.Context, actor Actor, code string) ([]string, error) {
	codes, hashes := newRecoveryCodes(actor.Name)
	now := s.now()
	_, err := s.modifyAccount(ctx, actor.Name, func(r *AccountRecord) error {
		switch {
		case r.TOTPSecret != "":
			return conflict("a second factor is enrolled already")
		case r.TOTPPending == "":
			return conflict("set up TOTP first (POST /api/auth/totp/setup)")
		}
		step, ok := matchTOTP(r.TOTPPending, code, now, 0)
		if !ok {
			return errCodeWrong
		}
		r.TOTPSecret, r.TOTPPending, r.TOTPLastStep = r.TOTPPending, "", step
		return nil
	}, func(tx Tx) error { return tx.ReplaceRecoveryCodes(actor.Name, hashes) })
	s.outcome(ctx, actor, "auth.totp_enroll", "account/"+actor.Name, err, "")
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// renewRecoveryCodes replaces the account's recovery codes, on a valid
// TOTP code; a wrong one counts towards lockout, as at login.
func (s *Service) renewRecoveryCodes(ctx context.Context, actor Actor, code string) ([]string, error) {
	now := s.now()
	codes, hashes := newRecoveryCodes(actor.Name)
	_, err := s.modifyAccount(ctx, actor.Name, func(r *AccountRecord) error {
		if err := s.lockedOut(actor.Name, actor.Remote, now); err != nil {
			return err
		}
		if r.TOTPSecret == "" {
			return conflict("enrol TOTP first")
		}
		step, ok := matchTOTP(r.TOTPSecret, code, now, r.TOTPLastStep)
		if !ok {
			return errCodeWrong
		}
		r.TOTPLastStep = step
		return nil
	}, func(tx Tx) error { return tx.ReplaceRecoveryCodes(actor.Name, hashes) })
	if errors.Is(err, errCodeWrong) {
		s.loginFailed(ctx, actor.Name, actor.Remote)
	}
	s.outcome(ctx, actor, "auth.recovery_codes_renew", "account/"+actor.Name, err, "")
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// ResetTOTP removes an account's second factor and recovery codes; if its
// role needs TOTP, its sessions can only enrol again.
func (s *Service) ResetTOTP(ctx context.Context, actor Actor, name string) (Account, error) {
	v, err := s.modifyAccount(ctx, name, func(r *AccountRecord) error {
		r.TOTPSecret, r.TOTPPending, r.TOTPLastStep = "", "", 0
		return nil
	}, func(tx Tx) error { return tx.ReplaceRecoveryCodes(name, nil) })
	s.outcome(ctx, actor, "auth.totp_reset", "account/"+clip(name), err, "")
	return v, err
}

// recoveryAlphabet is base32 without the look-alikes 0, 1, l and o.
const recoveryAlphabet = "abcdefghijkmnpqrstuvwxyz23456789"

// newRecoveryCodes makes the codes (16 characters, 80 bits, shown as
// xxxx-xxxx-xxxx-xxxx) and their hashes.
func newRecoveryCodes(account string) (codes, hashes []string) {
	for range recoveryCount {
		var b strings.Builder
		for i := range 16 {
			if i > 0 && i%4 == 0 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[randIndex(len(recoveryAlphabet))])
		}
		codes = append(codes, b.String())
		hashes = append(hashes, recoveryHash(account, b.String()))
	}
	return codes, hashes
}

// recoveryHash hashes a code as typed (any case, with or without dashes
// and spaces), salted with the account name.
func recoveryHash(account, code string) string {
	norm := strings.ToLower(strings.NewReplacer("-", "", " ", "").Replace(code))
	sum := sha256.Sum256([]byte("citywatch recovery\x00" + account + "\x00" + norm))
	return hex.EncodeToString(sum[:])
}
