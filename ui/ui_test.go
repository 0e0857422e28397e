package ui

import (
	"cmp"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/metricstore"
	"github.com/citywatch/citywatch/hub/workorder"
	"github.com/citywatch/citywatch/wire"
)

// TestEveryFileEmbedded checks that each file of the console in this
// directory and its sub-directories (vendor/) is in FS, so a new kind of
// file cannot be left out silently.
func TestEveryFileEmbedded(t *testing.T) {
	n := 0
	err := fs.WalkDir(os.DirFS("."), ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if name != "." && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if e.IsDir() || (path.Dir(name) == "." && strings.HasSuffix(name, ".go")) {
			return nil
		}
		n++
		if _, err := fs.Stat(FS(), name); err != nil {
			t.Errorf("%s is in ui/ but not embedded: %v", name, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 40 {
		t.Errorf("walked only %d files; is the walk broken?", n)
	}
	for _, name := range []string{"index.html", "app.js", "style.css", "i18n.json", "vendor/maplibre-gl/maplibre-gl.mjs"} {
		if _, err := fs.Stat(FS(), name); err != nil {
			t.Errorf("FS lacks %s: %v", name, err)
		}
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(FS(), name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReferencesResolve checks that index.html and every module refer only
// to files that exist in FS: a typo would otherwise surface as a blank page.
func TestReferencesResolve(t *testing.T) {
	local := func(ref string) bool {
		return ref != "" && !strings.Contains(ref, ":") && !strings.HasPrefix(ref, "#") && !strings.HasPrefix(ref, "/api/")
	}
	htmlRef := regexp.MustCompile(`(?:src|href)="([^"]*)"`)
	jsRef := regexp.MustCompile(`(?:\bfrom\s+|\bimport\s*\(?\s*|\bfetch\(\s*|url = )'(\./[^']+|[\w.-]+\.json)'`)

	tests := []struct {
		file string
		re   *regexp.Regexp
	}{{"index.html", htmlRef}}
	jsFiles, err := fs.Glob(FS(), "*.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range jsFiles {
		tests = append(tests, struct {
			file string
			re   *regexp.Regexp
		}{f, jsRef})
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			for _, m := range tt.re.FindAllStringSubmatch(read(t, tt.file), -1) {
				ref := m[1]
				if !local(ref) {
					continue
				}
				name := path.Clean(strings.TrimPrefix(ref, "./"))
				if _, err := fs.Stat(FS(), name); err != nil {
					t.Errorf("%s refers to %q, which is not in FS", tt.file, ref)
				}
			}
		})
	}
	// The entry point must be loaded as a module.
	if !strings.Contains(read(t, "index.html"), `<script type="module" src="app.js">`) {
		t.Error("index.html does not load app.js as a module")
	}
}

func dictionaries(t *testing.T) map[string]map[string]string {
	t.Helper()
	var d map[string]map[string]string
	if err := json.Unmarshal([]byte(read(t, "i18n.json")), &d); err != nil {
		t.Fatalf("i18n.json: %v", err)
	}
	return d
}

var placeholder = regexp.MustCompile(`\{\w+\}`)

// TestTranslationsComplete checks that en and zh-CN have the same keys, no
// empty strings, and the same placeholders.
func TestTranslationsComplete(t *testing.T) {
	d := dictionaries(t)
	en, zh := d["en"], d["zh-CN"]
	if len(en) == 0 || len(zh) == 0 {
		t.Fatalf("i18n.json needs en and zh-CN, has %d and %d keys", len(en), len(zh))
	}
	for k, v := range en {
		z, ok := zh[k]
		switch {
		case !ok:
			t.Errorf("zh-CN lacks %q", k)
		case strings.TrimSpace(v) == "" || strings.TrimSpace(z) == "":
			t.Errorf("%q is empty in en or zh-CN", k)
		default:
			pe, pz := placeholder.FindAllString(v, -1), placeholder.FindAllString(z, -1)
			slices.Sort(pe)
			slices.Sort(pz)
			if !slices.Equal(pe, pz) {
				t.Errorf("%q: placeholders differ: en %v, zh-CN %v", k, pe, pz)
			}
		}
	}
	for k := range zh {
		if _, ok := en[k]; !ok {
			t.Errorf("zh-CN has %q, which en lacks", k)
		}
	}
}

// TestKeysUsedExist checks that every key the page and modules name
// literally, and every code of the wire contract the console shows
// (wireWords), has an English string.
func TestKeysUsedExist(t *testing.T) {
	en := dictionaries(t)["en"]
	var used []string
	attr := regexp.MustCompile(`data-i18n(?:-title|-placeholder|-label)?="([^"]+)"`)
	for _, m := range attr.FindAllStringSubmatch(read(t, "index.html"), -1) {
		used = append(used, m[1])
	}
	call := regexp.MustCompile(`\bt\(\s*'([\w.-]+)'`)
	jsFiles, _ := fs.Glob(FS(), "*.js")
	for _, f := range jsFiles {
		src := read(t, f)
		for _, m := range call.FindAllStringSubmatch(src, -1) {
			used = append(used, m[1])
		}
		for _, m := range attr.FindAllStringSubmatch(src, -1) {
			used = append(used, m[1])
		}
	}
	used = append(used, wireWords()...)
	if len(used) < 50 {
		t.Fatalf("found only %d keys in use; has the t('…') call form changed?", len(used))
	}
	for _, k := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}
	if got, want := sorted(jsList(t, "store.js", "STATUSES")), sorted(names(wire.Statuses)); !slices.Equal(got, want) {
		t.Errorf("store.js STATUSES = %v; the hub's are %v", got, want)
	}
}

// TestLiveVideoHooks checks that the DOM ids and window.citywatch functions
// that browser tests of live video rely on are still there, so renaming one
// fails here, next to the change, rather than in a slow end-to-end test.
func TestLiveVideoHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="wall-btn"`, `id="wall"`, `<dialog id="player"`}},
		{"video.js", []string{`id="player-video"`, "dataset.state", "dataset.camera"}},
		{"wall.js", []string{"setLayout(n)", "assign(i, cameraId)", "dataset.layout", "dataset.tile", "el.dataset.camera"}},
		{"app.js", []string{"openLive(id)", "closeLive()", "videoStats()", "this.wall = new Wall(", "window.citywatch = app"}},
		{"whep.js", []string{"/api/cameras/", "/whep", "'application/sdp'", "method: 'DELETE'", "keepalive: true", "recvonly"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src := read(t, tt.file)
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
}

// TestAlarmHooks checks the DOM ids, attributes and window.citywatch.alarms
// functions that browser tests of the alarm desk rely on, and that every
// severity, state, source, transition action and type of the hub's alarm
// JSON has words (alarmWords; the console builds those keys at run time).
func TestAlarmHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="alarms-btn"`, `id="alarms"`, `id="alarm-detail"`}},
		{"alarms.js", []string{`data-alarm-count="${s}"`, `id="alarm-list"`, `data-alarm="${esc(a.id)}"`, `data-state="${esc(a.state)}"`,
			`data-severity="${esc(a.severity)}"`, "show() {", "async act(id, action, note", "api.alarmAct(", "sound?.alarm(a.severity)"}},
		{"api.js", []string{"/api/alarms?limit=", "/api/alarms/${seg(id)}/${seg(action)}"}},
		{"alarmdetail.js", []string{"nearestCameras(dev.id", "data-live="}},
		{"app.js", []string{"this.alarms = new Alarms(", "onAlarm: (ev) => this.alarms.event(ev)", "this.alarms.hello(m)"}},
		{"live.js", []string{"case 'alarm':"}},
		{"keys.js", []string{"...ALARM_SHORTCUTS"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src := read(t, tt.file)
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
	var sevs []string // the console's, most severe first
	for _, s := range slices.Backward(alarm.Severities) {
		sevs = append(sevs, s.String())
	}
	for _, l := range []struct {
		name string
		want []string
	}{{"SEVERITIES", sevs}, {"STATES", names(alarm.States)}} {
		if got := jsList(t, "alarms.js", l.name); !slices.Equal(got, l.want) {
			t.Errorf("alarms.js %s = %v; the hub's are %v", l.name, got, l.want)
		}
	}
	if got, want := alarm.WorkOrderTypes, affixed("", workorder.Breaches, "_breach"); !slices.Equal(got, want) {
		t.Errorf("alarm.WorkOrderTypes = %v; the work orders' breaches make %v", got, want)
	}

	en := dictionaries(t)["en"]
	keys := alarmWords(t)
	for _, s := range []string{"ack", "assign", "shelve", "unshelve", "clear"} {
		keys = append(keys, "alarm.act_"+s)
	}
	for _, s := range []string{"sev", "state", "count", "source", "device", "site", "district", "age", "assignee"} {
		keys = append(keys, "alarm.col_"+s)
	}
	for _, s := range []string{"15m", "1h", "8h"} {
		keys = append(keys, "alarm.for_"+s)
	}
	for _, k := range keys {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}
}

// TestOneEscaper checks that html.js is the only place that escapes HTML,
// and that every module building HTML from strings imports it: a private
// copy of esc is how one of them ends up missing a character.
func TestOneEscaper(t *testing.T) {
	own := regexp.MustCompile(`(?m)(function\s+esc\b|\besc\s*=\s*\(|replace\(/\[&<>)`)
	builds := regexp.MustCompile("(innerHTML|insertAdjacentHTML|outerHTML)\\b[^;]*[`$]")
	jsFiles, _ := fs.Glob(FS(), "*.js")
	for _, f := range jsFiles {
		src := read(t, f)
		if f == "html.js" {
			if !strings.Contains(src, "export function esc(") || !strings.Contains(src, "export function html(") {
				t.Errorf("html.js lacks esc or html")
			}
			continue
		}
		if own.MatchString(src) {
			t.Errorf("%s escapes HTML itself; import esc or html from ./html.js", f)
		}
		if builds.MatchString(src) && !strings.Contains(src, "from './html.js'") {
			t.Errorf("%s builds HTML from strings without ./html.js", f)
		}
	}
}

// TestAccessWords checks that every role, permission, audit outcome and
// action, error code and view the console names at run time has words, and
// that the console's lists of roles and grantable permissions are the
// hub's.
func TestAccessWords(t *testing.T) {
	en := dictionaries(t)["en"]
	var keys []string
	for _, r := range auth.Roles {
		keys = append(keys, "role."+string(r), "role_hint."+string(r))
	}
	for _, p := range auth.Permissions {
		keys = append(keys, "perm."+string(p))
	}
	for _, o := range jsList(t, "audit.js", "OUTCOMES") {
		keys = append(keys, "outcome."+o)
	}
	for _, a := range jsList(t, "audit.js", "ACTIONS") {
		keys = append(keys, "action."+a)
	}
	for _, c := range []string{"unauthenticated", "invalid_credentials", "totp_required", "totp_invalid", "locked", "disabled",
		"forbidden", "csrf", "restricted", "rate_limited", "network", "internal", "wrong_password", "password_policy",
		"bad_request", "not_found", "conflict"} {
		keys = append(keys, "err."+c)
	}
	for _, s := range []string{"accounts", "lockouts", "tokens", "agents"} {
		keys = append(keys, "admin.tab_"+s)
	}
	for _, s := range []string{"active", "expired", "revoked"} {
		keys = append(keys, "admin.tk_"+s)
	}
	for _, s := range []string{"account", "address"} {
		keys = append(keys, "lockout."+s)
	}
	for _, s := range []string{"session", "token", "link"} {
		keys = append(keys, "via."+s)
	}
	for _, s := range []string{"from", "to", "actor", "action", "object", "outcome", "remote", "q"} {
		keys = append(keys, "audit.f_"+s)
	}
	for _, s := range []string{"seq", "time", "actor", "role", "remote", "action", "object", "outcome", "detail"} {
		keys = append(keys, "audit.col_"+s)
	}
	for _, s := range []string{"expired", "ended", "signed_out", "signed_out_all"} {
		keys = append(keys, "login.note_"+s)
	}
	for _, s := range []string{"10m", "1h", "8h"} {
		keys = append(keys, "video.ttl_"+s)
	}
	keys = append(keys, "acct.totp_enrol", "acct.recovery_codes", "acct.password_expires", "acct.password_expires_soon",
		"login.use_code", "login.use_recovery", "login.need_code", "login.need_recovery", "dialog.copied", "dialog.copy_failed")
	for _, k := range keys {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}

	for _, tt := range []struct {
		name string
		want []string
	}{
		{"ROLES", names(auth.Roles)},
		{"GRANTABLE", names(auth.Grantable)},
	} {
		if got := jsList(t, "admin.js", tt.name); !slices.Equal(got, tt.want) {
			t.Errorf("admin.js %s = %v; the hub has %v", tt.name, got, tt.want)
		}
	}
}

func names[S ~string](xs []S) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = string(x)
	}
	return out
}

// jsList reads the string array literal `export const NAME = [...]` of a
// module.
func jsList(t *testing.T, file, name string) []string {
	t.Helper()
	m := regexp.MustCompile(`export const ` + name + ` = \[([^\]]*)\]`).FindStringSubmatch(read(t, file))
	if m == nil {
		t.Fatalf("%s has no export const %s = [...]", file, name)
	}
	var out []string
	for _, q := range regexp.MustCompile(`'([^']*)'`).FindAllStringSubmatch(m[1], -1) {
		out = append(out, q[1])
	}
	if len(out) == 0 {
		t.Fatalf("%s: %s is empty", file, name)
	}
	return out
}

// TestAuthHooks checks the DOM ids and window.citywatch members that
// browser tests of signing in, administration and the audit trail rely on.
func TestAuthHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="login"`, `id="login-user"`, `id="login-pass"`, `id="login-totp"`, `id="login-recovery"`,
			`id="login-use-recovery"`, `id="login-submit"`, `id="login-error"`, `id="login-lang"`, `id="setup"`,
			`id="whoami"`, `id="account-menu"`, `id="logout"`, `id="logout-all"`, `id="acct-password"`, `id="acct-totp"`,
			`id="view-console"`, `id="view-admin"`, `id="view-audit"`, `id="admin"`, `id="audit"`, `<body data-view="loading">`}},
		{"account.js", []string{`id="pw-current"`, `id="pw-new"`, `id="pw-repeat"`, `id="pw-submit"`, `id="pw-problems"`,
			`id="totp-qr"`, `id="totp-secret"`, `id="totp-code"`, `id="totp-confirm"`, `id="recovery-codes"`, `id="recovery-done"`,
			`id="renew-code"`}},
		{"admin.js", []string{`id="admin-tab-${x.id}"`, `id="admin-${x.id}"`, `id="${x.id}-table"`, "'account-new'", "'token-new'", "'agent-new'",
			`data-account="${a.name}"`, `data-token="${k.id}"`, `data-agent="${a.agent}"`, `data-lockout=`, `id="dlg-name"`, `id="dlg-role"`,
			`id="dlg-scope-all"`, `id="dlg-districts"`, `id="dlg-sites"`, `id="dlg-ttl"`, `id="dlg-agent"`, `id="dlg-password"`, `name="grant"`}},
		{"dialog.js", []string{`id="dialog-submit"`, `id="confirm-ok"`, `id="confirm-typed"`, `'secret-value'`, `id="secret-done"`, `data-dlg-action=`}},
		{"audit.js", []string{`id="audit-filters"`, `id="audit-search"`, `id="audit-rows"`, `id="audit-older"`, `id="audit-verify"`,
			`id="audit-verify-result"`, `id="audit-csv"`, `id="audit-jsonl"`, "dataset.ok", `data-seq="${r.seq}"`, `data-outcome="${r.outcome}"`}},
		{"video.js", []string{`id="player-link"`, `id="player-link-url"`, `id="player-link-copy"`, `id="player-link-expiry"`}},
		{"app.js", []string{"window.citywatch = app", "this.admin = ", "this.audit = ", "setView(id)", "can(p)"}},
		{"api.js", []string{"'X-CSRF-Token'", "code === 'csrf'", "'restricted'", "status === 401"}},
		{"live.js", []string{"SESSION_ENDED = 4001", "msg.after", "msg.upto"}},
		{"whep.js", []string{"request(url(this.camera)", "request(loc, { method: 'DELETE'"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			src := read(t, tt.file)
			for _, w := range tt.want {
				if !strings.Contains(src, w) {
					t.Errorf("%s lacks %q", tt.file, w)
				}
			}
		})
	}
	// Every request goes through api.request: no module but api.js calls
	// fetch on the hub's API.
	jsFiles, _ := fs.Glob(FS(), "*.js")
	for _, f := range jsFiles {
		if f != "api.js" && regexp.MustCompile(`\bfetch\(`).MatchString(read(t, f)) && f != "i18n.js" {
			t.Errorf("%s calls fetch itself; use api.request (CSRF token, session handling)", f)
		}
	}
}

// TestMapAndReportHooks checks the DOM ids, attributes and window hooks
// that browser tests of the map and the reports rely on, and the hub
// addresses the console asks.
func TestMapAndReportHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="view-map"`, `id="view-reports"`, `<section id="map" class="view"`, `<section id="reports" class="view"`}},
		{"map.js", []string{`id="map-canvas"`, `data-testid="city-map"`, `data-state="loading"`, "dataset.state = 'ready'", "p.id = 'map-error'",
			`id="map-search"`, `id="map-results"`, `id="map-status"`, `id="map-coverage"`, `id="map-plan"`, `data-layer="${key}"`,
			`id="map-districts"`, `data-district="${x.name}"`, `id="map-legend"`, `id="map-whatif"`, `id="map-planned"`, `data-planned-row="${p.n}"`,
			"el.dataset.planned = ", `data-field="${key}"`, `id="map-plan-centre"`, `id="map-whatif-result"`, `id="map-whatif-added"`, `id="map-whatif-districts"`,
			"wedgeColour(id) {", "get map() {", "get ready() {", "get whatif() {", "promoteId: 'id', cluster: true", "updateData({ update, remove })"}},
		{"reports.js", []string{`id="rep-period"`, `id="rep-date"`, `id="rep-from"`, `id="rep-to"`, `id="rep-group"`, `id="rep-district"`, `id="rep-load"`,
			`id="rep-print"`, `id="rep-simulated"`, `id="rep-avail"`, "csv('rep-avail-csv')", `id="rep-chart"`, `id="rep-metric"`, `id="rep-ledger-totals"`,
			`id="rep-ledger-districts"`, `id="rep-ledger-cameras"`, `id="rep-ledger-maintenance"`, "csv('rep-districts-csv')", "csv('rep-cameras-csv')",
			"csv('rep-maintenance-csv')", `data-flagged="true"`, `data-device="${c.id}"`, `data-cause="${c}"`, "can('report.export')", "window.print()"}},
		{"app.js", []string{"window.citywatchMap = this.cityMap.hook()", "this.reports = ", "this.cityMap?.changed(touched)", "this.cityMap?.reload()",
			"onChange: () => this.cityMap?.alarmsChanged()", "placeDetail(id)"}},
		{"api.js", []string{"'/api/map/config'", "`/api/map/${seg(name)}`", "`/api/map/wedges", "`/api/coverage/cells", "'/api/coverage/whatif'",
			"`/api/coverage/ledger", "'/api/coverage'", "`/api/reports/${seg(name)}", "format: 'csv'", "BASEMAP_URL = '/api/map/basemap'"}},
		{"vendor.js", []string{"import('./vendor/maplibre-gl/maplibre-gl.mjs')", "setWorkerUrl(", "import('./vendor/uplot/uPlot.esm.js')", "window.pmtiles"}},
		{"keys.js", []string{"p: 'map'", "r: 'reports'"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) { lacks(t, tt.file, tt.want) })
	}
}

// lacks reports each of want that file does not contain.
func lacks(t *testing.T, file string, want []string) {
	t.Helper()
	src := read(t, file)
	for _, w := range want {
		if !strings.Contains(src, w) {
			t.Errorf("%s lacks %q", file, w)
		}
	}
}

// TestMapAndReportWords checks the keys the map, the reports and the
// shortcuts build at run time.
func TestMapAndReportWords(t *testing.T) {
	en := dictionaries(t)["en"]
	keys := []string{"view.map", "view.reports"}
	for _, s := range []string{"districts", "areas", "buildings", "wedges", "devices", "alarms"} {
		if !strings.Contains(read(t, "map.js"), "layer('"+s+"')") {
			t.Errorf("map.js has no layer toggle %q", s)
		}
		keys = append(keys, "map.layer_"+s)
	}
	for _, s := range jsList(t, "map.js", "COVERAGE_STATES") {
		keys = append(keys, "map.cell_"+s)
	}
	for _, s := range []string{"heading", "fov", "range_m"} {
		keys = append(keys, "map.f_"+s)
	}
	for _, list := range []struct{ name, prefix string }{{"PERIODS", "rep.period_"}, {"GROUPS", "rep.group_"}, {"CAUSES", "rep.cause_"}} {
		for _, s := range jsList(t, "reports.js", list.name) {
			keys = append(keys, list.prefix+s)
		}
	}
	cols := regexp.MustCompile(`\bth\('(\w+)'`).FindAllStringSubmatch(read(t, "reports.js"), -1)
	if len(cols) < 15 {
		t.Fatalf("found only %d report columns; has th('…') changed?", len(cols))
	}
	for _, m := range cols {
		keys = append(keys, "rep.col_"+m[1])
	}
	for _, m := range regexp.MustCompile(`\['[^']+', '(keys\.[\w.]+)'`).FindAllStringSubmatch(read(t, "keys.js"), -1) {
		keys = append(keys, m[1])
	}
	for _, k := range keys {
		if _, ok := en[k]; !ok {
			t.Errorf("key %q is used but not in i18n.json", k)
		}
	}
}

// TestVendored checks that every vendored file a module names is in FS,
// that each vendored library carries its licence, and that the console's
// own modules need nothing the hub's Content Security Policy forbids.
func TestVendored(t *testing.T) {
	ref := regexp.MustCompile(`'\./(vendor/[^']+)'`)
	jsFiles, _ := fs.Glob(FS(), "*.js")
	seen := 0
	for _, f := range jsFiles {
		src := read(t, f)
		for _, m := range ref.FindAllStringSubmatch(src, -1) {
			seen++
			if _, err := fs.Stat(FS(), m[1]); err != nil {
				t.Errorf("%s refers to %s, which is not in FS", f, m[1])
			}
		}
		for _, bad := range []string{"eval(", "new Function(", "'blob:", "createObjectURL(", "https://", "http://"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s contains %q: the hub's CSP allows only same-origin scripts, no eval and no blob: workers", f, bad)
			}
		}
	}
	if seen < 6 {
		t.Errorf("found only %d references to vendor/; has vendor.js changed?", seen)
	}
	dirs, err := fs.ReadDir(FS(), "vendor")
	if err != nil {
		t.Fatal(err)
	}
	libs := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		libs++
		lic, _ := fs.Glob(FS(), "vendor/"+d.Name()+"/LICENSE*")
		if len(lic) == 0 {
			t.Errorf("vendor/%s has no LICENSE file", d.Name())
		}
	}
	if libs != 3 {
		t.Errorf("vendor/ has %d libraries, want 3 (maplibre-gl, pmtiles, uplot)", libs)
	}
}

// TestWorkHooks checks the DOM ids, attributes and window.citywatch.work
// members that the phone test of work orders (e2e/work_phone_test.go)
// relies on, the hub addresses the work view asks, and that the live
// work-order events reach it.
func TestWorkHooks(t *testing.T) {
	tests := []struct {
		file string
		want []string
	}{
		{"index.html", []string{`id="view-work"`, `data-view="work"`, `aria-keyshortcuts="o"`, `<section id="work" class="view"`}},
		{"work.js", []string{"export class WorkView", `id="work-mine"`, `id="work-all"`, `id="work-near"`, `id="work-list"`, `id="work-empty"`,
			`id="work-count"`, `id="work-notice"`, `data-order="${o.id}"`, `data-state="${o.state}"`, `id="work-detail"`, `id="work-detail-h"`,
			`data-order-id="${d.id}"`, `data-state="${d.state}"`, `id="work-back"`, `id="work-msg"`, "el.dataset.kind = kind", `id="work-note"`,
			`id="work-act-${a}"`, `id="work-probe"`, `id="work-probe-results"`, `data-probe-device="${r.device}"`, `data-fresh="${String(r.fresh)}"`,
			`data-status="${r.status}"`, `data-dev="${x.id}"`, `class="wk-reason"`, `id="work-geo"`, `id="work-trail"`, `data-action="${h.action}"`,
			"class=\"wk-dist\"", "navigator.geolocation.getCurrentPosition(", "show() {", "hide() {", "event(ev) {", "async act(action", "REFRESH_MS = 1000",
			"`geo:${at}?q=${at}(${tag})`"}},
		{"api.js", []string{"`/api/workorders${query({ mine: mine ? 'true' : '' })}`", "`/api/workorders/${seg(id)}`",
			"send('POST', `/api/workorders/${seg(id)}/${seg(action)}`, note ? { note } : {})", "send('POST', `/api/workorders/${seg(id)}/probe`, {})"}},
		{"app.js", []string{"this.work = this.allowed('work') ? new WorkView(", "onWorkOrder: (ev) => this.work?.event(ev)",
			"{ id: 'work', perm: 'status.read', also: keys.WORK_PERMS }", "if (id === 'work') this.work.show(); else this.work?.hide();"}},
		{"live.js", []string{"case 'workorder':", "this.onWorkOrder(msg.event)"}},
		{"keys.js", []string{"WORK_PERMS = ['work.manage', 'work.dispatch']", "o: 'work'", "['o', 'keys.view_work', WORK_PERMS]"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) { lacks(t, tt.file, tt.want) })
	}
	if got, want := jsList(t, "keys.js", "WORK_PERMS"), names([]auth.Permission{auth.WorkManage, auth.WorkDispatch}); !slices.Equal(got, want) {
		t.Errorf("keys.js WORK_PERMS = %v; the hub's are %v", got, want)
	}
}

// TestWorkWords checks that every key the work view names, literally or
// built at run time (states, actions, the history's actions, breaches),
// has words in English and Chinese, and that the view's lists are the
// hub's.
func TestWorkWords(t *testing.T) {
	d := dictionaries(t)
	src := read(t, "work.js")
	var keys []string
	// Every quoted key: t('work.x'), t(cond ? 'work.a' : 'work.b'); not
	// the prefixes given to label('work.state', …), nor permissions.
	perms := names(auth.Permissions)
	for _, m := range regexp.MustCompile(`(label\(\s*)?'((?:work|view|keys|app|err)\.[\w.]+)'`).FindAllStringSubmatch(src, -1) {
		if m[1] == "" && !slices.Contains(perms, m[2]) {
			keys = append(keys, m[2])
		}
	}
	if len(keys) < 40 {
		t.Fatalf("found only %d keys in work.js; has the t('…') call form changed?", len(keys))
	}
	for _, a := range []string{"hold", "note"} { // t(`work.ask_${action}`)
		keys = append(keys, "work.ask_"+a, "work.ask_"+a+"_label", "work.ask_"+a+"_submit")
	}
	for _, list := range []struct{ name, prefix string }{
		{"STATES", "work.state."}, {"ACTIONS", "work.act."}, {"TRAIL_ACTIONS", "work.trail."}, {"BREACHES", "work.breached."},
	} {
		for _, s := range jsList(t, "work.js", list.name) {
			keys = append(keys, list.prefix+s)
		}
	}
	keys = append(keys, "view.work", "view.work_title", "keys.view_work", "err.unavailable")
	for _, k := range keys {
		for _, lang := range []string{"en", "zh-CN"} {
			if strings.TrimSpace(d[lang][k]) == "" {
				t.Errorf("work.js uses %q, which %s lacks", k, lang)
			}
		}
	}

	if got, want := jsList(t, "work.js", "STATES"), names(workorder.States); !slices.Equal(got, want) {
		t.Errorf("work.js STATES = %v; the hub's are %v", got, want)
	}
	for _, a := range jsList(t, "work.js", "ACTIONS") {
		if !slices.Contains(workorder.PersonActions, workorder.Action(a)) {
			t.Errorf("work.js offers %q, which is not an action of POST /api/workorders/{id}/{action}", a)
		}
	}
	if got, want := sorted(jsList(t, "work.js", "TRAIL_ACTIONS")), sorted(names(workorder.Actions)); !slices.Equal(got, want) {
		t.Errorf("work.js TRAIL_ACTIONS = %v; the hub's actions are %v", got, want)
	}
	if got, want := jsList(t, "work.js", "BREACHES"), workorder.Breaches; !slices.Equal(got, want) {
		t.Errorf("work.js BREACHES = %v; the hub's are %v", got, want)
	}
}

// The words of the hub's codes. Every code the hub puts in its JSON and
// the console shows to a person comes from a Go list, so a new constant
// without words fails here rather than showing as a raw code.

// wireWords are the keys of the wire contract's codes: statuses, the
// reasons of a device's status and of a live session's end, device and
// sensor and topology node kinds, metrics.
func wireWords() []string {
	var keys []string
	keys = append(keys, affixed("status.", wire.Statuses, "")...)
	keys = append(keys, affixed("reason.", wire.Reasons, "")...)
	keys = append(keys, affixed("reason.", wire.LiveReasons, "")...)
	keys = append(keys, affixed("kind.", wire.DeviceKinds, "")...)
	keys = append(keys, affixed("sensor.", wire.SensorKinds, "")...)
	keys = append(keys, affixed("node_kind.", wire.NodeKinds, "")...)
	return append(keys, affixed("metric.", wire.Metrics, "")...)
}

// alarmWords are the keys of the alarms' severities, states, sources,
// transition actions and types. A type finds its words as typeLabel
// (alarms.js) looks for them: TYPE_WORDS names the keys of some sources'
// types, the others have alarm.type.*; a type that is its own source has
// the source's words.
func alarmWords(t *testing.T) []string {
	t.Helper()
	var keys []string
	for _, s := range alarm.Severities {
		keys = append(keys, "alarm.sev."+s.String())
	}
	keys = append(keys, affixed("alarm.state.", alarm.States, "")...)
	keys = append(keys, affixed("alarm.source.", alarm.Sources, "")...)
	keys = append(keys, affixed("alarm.action.", alarm.Actions, "")...)
	types := alarmTypes()
	m := regexp.MustCompile(`const TYPE_WORDS = \{([^}]*)\}`).FindStringSubmatch(read(t, "alarms.js"))
	if m == nil {
		t.Fatal("alarms.js has no const TYPE_WORDS = {...}")
	}
	js := map[string]string{}
	for _, kv := range regexp.MustCompile(`(\w+): '([\w.]+)'`).FindAllStringSubmatch(m[1], -1) {
		js[kv[1]] = kv[2]
	}
	for _, src := range alarm.Sources {
		ty, ok := types[src]
		switch {
		case !ok:
			t.Errorf("alarm source %q: its types are not known here; list them and give them words", src)
			continue
		case ty.words == "":
			continue
		}
		if got := cmp.Or(js[string(src)], ownTypeWords); got != ty.words {
			t.Errorf("alarms.js TYPE_WORDS finds the words of %s alarms' types in %s.*, want %s.*", src, got, ty.words)
		}
		keys = append(keys, affixed(ty.words+".", ty.types, "")...)
	}
	if len(types) != len(alarm.Sources) {
		t.Errorf("the types of %d sources are listed here, the hub has %d", len(types), len(alarm.Sources))
	}
	return keys
}

// ownTypeWords is where the words of an alarm type are when TYPE_WORDS
// (alarms.js) names no other place for its source's types.
const ownTypeWords = "alarm.type"

// typeWords is where an alarm source's types find their words ("" for a
// type that is its source, whose words say it) and what they are.
type typeWords struct {
	words string
	types []string
}

// alarmTypes are the types of the hub's alarms by source, from the Go
// lists (see alarm.Alarm's Type).
func alarmTypes() map[alarm.Source]typeWords {
	return map[alarm.Source]typeWords{
		alarm.SourceDeviceOffline:   {ownTypeWords, affixed("", wire.DeviceKinds, "_offline")},
		alarm.SourceAgentOffline:    {},
		alarm.SourceStreamFailure:   {"reason", names(alarm.StreamReasons)},
		alarm.SourceSensorTriggered: {"sensor", names(wire.SensorKinds)},
		alarm.SourceSupervisionLost: {},
		alarm.SourcePowerLost:       {},
		alarm.SourceTamper:          {"sensor", append(names(wire.SensorKinds), string(wire.KindCamera))},
		alarm.SourceMotion:          {},
		alarm.SourceThreshold:       {"metric", wire.Metrics},
		alarm.SourceTopology:        {ownTypeWords, affixed("", wire.NodeKinds, "_down")},
		alarm.SourcePowerFeed:       {},
		alarm.SourceSecurity:        {ownTypeWords, alarm.SecurityTypes},
		alarm.SourceSystem:          {ownTypeWords, alarm.SystemTypes},
		alarm.SourceWorkOrder:       {ownTypeWords, alarm.WorkOrderTypes},
	}
}

// workWords are the keys of the work orders' states, the actions of
// their trail and their breaches.
func workWords() []string {
	keys := affixed("work.state.", workorder.States, "")
	keys = append(keys, affixed("work.trail.", workorder.Actions, "")...)
	return append(keys, affixed("work.breached.", workorder.Breaches, "")...)
}

// affixed returns prefix + x + suffix for each of xs.
func affixed[S ~string](prefix string, xs []S, suffix string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = prefix + string(x) + suffix
	}
	return out
}

func sorted(xs []string) []string {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs
}

// acronyms may stand as they are in Chinese words.
var acronyms = map[string]bool{"RTSP": true, "FPS": true, "UPS": true, "PoE": true, "TCP": true}

var asciiWords = regexp.MustCompile(`^[A-Za-z _-]+$`)

// TestCodesInChinese checks that every code the hub emits and the console
// shows (wireWords, alarmWords, workWords, the agents' reasons, what breaks
// an audit trail, where a device's history came from) has words
// in English and in Chinese, and that the Chinese is not English left in
// place: neither the English words nor plain Latin letters, acronyms
// aside. TestTranslationsComplete checks the other keys.
func TestCodesInChinese(t *testing.T) {
	d := dictionaries(t)
	keys := slices.Concat(wireWords(), alarmWords(t), workWords(), affixed("agent_reason.", fleet.AgentReasons, ""), affixed("audit_broken.", audit.BrokenKinds, ""),
		affixed("history_source.", metricstore.Sources, ""))
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) < 100 {
		t.Fatalf("only %d keys of codes; are the lists empty?", len(keys))
	}
	for _, k := range keys {
		en, zh := d["en"][k], d["zh-CN"][k]
		switch {
		case strings.TrimSpace(en) == "":
			t.Errorf("%q has no English words", k)
		case strings.TrimSpace(zh) == "":
			t.Errorf("%q has no Chinese words", k)
		case acronyms[zh]:
		case zh == en || asciiWords.MatchString(zh):
			t.Errorf("%q is English in zh-CN: %q", k, zh)
		}
	}
}
