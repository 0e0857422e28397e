package identity

import (
	"bytes"
	"context"
	"encoding/base64"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
)

// TestTOTPEnrolment: an admin must enrol TOTP before anything else, with
// a real code from the key it was given.
func TestTOTPEnrolment(t *testing.T) {
	e := newEnv(t)
	pw := e.add("ada", auth.Admin, auth.Everything)
	c := e.client("")
	want(t, "login", c.login("ada", pw, nil), 200, "")
	want(t, "change password", c.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": "Fresh-Secret-2026!"}), 204, "")
	c.password = "Fresh-Secret-2026!"
	want(t, "status before TOTP", c.do("GET", "/api/test/status", nil), 403, "restricted")
	var me Me
	c.do("GET", "/api/auth/me", nil).decode(t, &me)
	if me.Restricted != "totp_enrollment" || !me.TOTPRequired || me.TOTPEnabled {
		t.Fatalf("me %+v: want restricted to totp_enrollment", me)
	}

	want(t, "confirm before setup", c.do("POST", "/api/auth/totp/confirm", map[string]string{"code": "123456"}), 409, "conflict")
	r := c.do("POST", "/api/auth/totp/setup", nil)
	want(t, "setup", r, 200, "")
	var setup TOTPSetup
	r.decode(t, &setup)
	u, err := url.Parse(setup.URL)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != setup.Secret || u.Query().Get("issuer") != "citywatch" {
		t.Errorf("otpauth URL %q for secret %q", setup.URL, setup.Secret)
	}
	pngData, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(setup.QRPNG, "data:image/png;base64,"))
	if err != nil {
		t.Fatal(err)
	}
	if img, err := png.Decode(bytes.NewReader(pngData)); err != nil || img.Bounds().Dx() != 256 {
		t.Errorf("QR code is not a 256 px PNG: %v", err)
	}

	want(t, "wrong code", c.do("POST", "/api/auth/totp/confirm", map[string]string{"code": "000000"}), 400, "totp_invalid")
	c.totpSecret = setup.Secret
	r = c.do("POST", "/api/auth/totp/confirm", map[string]string{"code": c.code()})
	want(t, "confirm", r, 200, "")
	var rc struct {
		Codes []string `json:"recovery_codes"`
	}
	r.decode(t, &rc)
	if len(rc.Codes) != 10 || len(rc.Codes[0]) != 19 {
		t.Errorf("recovery codes %q: want 10 of xxxx-xxxx-xxxx-xxxx", rc.Codes)
	}
	want(t, "status after TOTP", c.do("GET", "/api/test/status", nil), 200, "")
	var after Me
	c.do("GET", "/api/auth/me", nil).decode(t, &after)
	if !after.TOTPEnabled || after.Restricted != "" {
		t.Errorf("me after enrolment %+v", after)
	}
	want(t, "setup again", c.do("POST", "/api/auth/totp/setup", nil), 409, "conflict")
	if len(e.audit.find("auth.totp_enroll", audit.Success)) != 1 {
		t.Error("enrolment not audited")
	}
}

func TestTOTPLogin(t *testing.T) {
	e := newEnv(t)
	ada := e.ready("ada", auth.Admin, auth.Everything)
	enrolCode := ada.code() // used at confirm, in this time step

	c := e.client("127.0.0.9")
	want(t, "password only", c.login("ada", ada.password, nil), 401, "totp_required")
	want(t, "wrong password with a code", c.login("ada", "wrong", map[string]string{"totp": enrolCode}), 401, "invalid_credentials")
	want(t, "the code used at enrolment", c.login("ada", ada.password, map[string]string{"totp": enrolCode}), 401, "totp_invalid")

	e.clock.Add(30 * time.Second)
	code := ada.code()
	want(t, "a fresh code", c.login("ada", ada.password, map[string]string{"totp": code}), 200, "")
	want(t, "the same code again", e.client("127.0.0.9").login("ada", ada.password, map[string]string{"totp": code}), 401, "totp_invalid")

	// One step of skew either way is accepted, two are not.
	e.clock.Add(90 * time.Second)
	late := ada.code()
	e.clock.Add(30 * time.Second)
	want(t, "a code one step old", e.client("").login("ada", ada.password, map[string]string{"totp": late}), 200, "")
	e.clock.Add(30 * time.Second)
	stale := ada.code()
	e.clock.Add(60 * time.Second)
	want(t, "a code two steps old", e.client("").login("ada", ada.password, map[string]string{"totp": stale}), 401, "totp_invalid")

	if n := len(e.audit.find("auth.login", audit.Failure)); n < 3 {
		t.Errorf("%d failed logins audited, want the bad codes too", n)
	}
}

func TestWrongTOTPCountsTowardsLockout(t *testing.T) {
	e := newEnv(t)
	ada := e.ready("ada", auth.Admin, auth.Everything)
	c := e.client("127.0.0.9")
	for range 5 {
		want(t, "bad code", c.login("ada", ada.password, map[string]string{"totp": "000000"}), 401, "totp_invalid")
	}
	e.clock.Add(30 * time.Second)
	want(t, "right code while locked", c.login("ada", ada.password, map[string]string{"totp": ada.code()}), 403, "locked")
}

func TestRecoveryCodes(t *testing.T) {
	e := newEnv(t)
	pw := e.add("ada", auth.Admin, auth.Everything)
	c := e.client("")
	c.login("ada", pw, nil)
	c.do("POST", "/api/auth/password", map[string]string{"current": pw, "new": "Fresh-Secret-2026!"})
	c.password = "Fresh-Secret-2026!"
	codes := c.enrolTOTP()

	in := e.client("")
	want(t, "recovery code", in.login("ada", c.password, map[string]string{"recovery_code": strings.ToUpper(codes[3])}), 200, "")
	want(t, "same code again", e.client("").login("ada", c.password, map[string]string{"recovery_code": codes[3]}), 401, "totp_invalid")
	want(t, "made-up code", e.client("").login("ada", c.password, map[string]string{"recovery_code": "aaaa-bbbb-cccc-dddd"}), 401, "totp_invalid")
	if len(e.audit.find("auth.recovery_code_used", audit.Success)) != 1 {
		t.Error("recovery code use not audited")
	}

	// New codes replace the old, on a valid TOTP code.
	e.clock.Add(30 * time.Second)
	want(t, "renew with a bad code", in.do("POST", "/api/auth/recovery-codes", map[string]string{"code": "000000"}), 400, "totp_invalid")
	r := in.do("POST", "/api/auth/recovery-codes", map[string]string{"code": c.code()})
	want(t, "renew", r, 200, "")
	var rc struct {
		Codes []string `json:"recovery_codes"`
	}
	r.decode(t, &rc)
	want(t, "an old code after renewal", e.client("").login("ada", c.password, map[string]string{"recovery_code": codes[4]}), 401, "totp_invalid")
	want(t, "a new code", e.client("").login("ada", c.password, map[string]string{"recovery_code": rc.Codes[0]}), 200, "")
}

func TestTOTPReset(t *testing.T) {
	e := newEnv(t)
	sam := e.ready("sam", auth.SecurityAdmin, auth.Scope{})
	ada := e.ready("ada", auth.Admin, auth.Everything)
	if a, _ := e.svc.Account(context.Background(), "ada"); !a.TOTPEnabled {
		t.Fatalf("before reset %+v", a)
	}
	r := sam.do("POST", "/api/accounts/ada/reset-totp", nil)
	want(t, "reset", r, 200, "")
	var a Account
	r.decode(t, &a)
	if a.TOTPEnabled {
		t.Errorf("after reset %+v", a)
	}
	want(t, "ada's session now", ada.do("GET", "/api/test/status", nil), 403, "restricted")
	c := e.client("")
	want(t, "login without a code", c.login("ada", ada.password, nil), 200, "")
	c.enrolTOTP()
	want(t, "after enrolling again", c.do("GET", "/api/test/status", nil), 200, "")
	if len(e.audit.find("auth.totp_reset", audit.Success)) != 1 {
		t.Error("reset not audited")
	}
}
