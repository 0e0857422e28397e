package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzListQuery feeds arbitrary query strings to the list endpoints and the
// device page: they must answer 200 or 400, always with a JSON body.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{
		"", "district=Xicheng&status=offline&status=unreachable", "kind=camera&q=GATE&limit=1&offset=1",
		"agent=agent-east&site=depot", "status=%zz", "limit=-1", "limit=99999999999999999999", "offset=1e3",
		"q=%E5%9C%A8%E7%BA%BF", "q=%ff%fe", "a;b=c", "since=2h", "since=2025-03-01T08:00:00Z", "since=-1h",
		"district=" + string(make([]byte, 200)), "limit=1&limit=2", "status=&q=&district=",
	} {
		f.Add(seed)
	}
	s := mustNew(f, Config{}, testDeps())
	h := s.router.Handler()
	f.Fuzz(func(t *testing.T, raw string) {
		for _, path := range []string{"/api/devices", "/api/agents", "/api/devices/cam-gate-1"} {
			req := httptest.NewRequest("GET", "/", nil)
			req.URL = &url.URL{Path: path, RawQuery: raw}
			req.RequestURI = req.URL.RequestURI()
			req.Header.Set("Authorization", "Bearer operator")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
				t.Fatalf("%s?%q = %d: %s", path, raw, rec.Code, rec.Body)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s?%q: body is not JSON: %q", path, raw, rec.Body)
			}
		}
	})
}
