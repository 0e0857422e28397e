package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/citywatch/citywatch/agent/sim"
	"github.com/citywatch/citywatch/hub/audit"
	"github.com/citywatch/citywatch/hub/auth"
	"github.com/citywatch/citywatch/hub/config"
	"github.com/citywatch/citywatch/hub/console"
	"github.com/citywatch/citywatch/hub/fleet"
	"github.com/citywatch/citywatch/hub/identity"
	"github.com/citywatch/citywatch/wire"
)

// fromAddress is an HTTP client whose connections come from addr, another
// loopback address (Linux routes all of 127.0.0.0/8 to lo), so that one
// machine can be several login sources.
func fromAddress(addr string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(addr)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 16}}
}

// loginBurst tries logins with wrong passwords, at most rate a second (0:
// as fast as they are answered), from addrs in turn with workers
// goroutines, until at least n were tried and done is closed: first
// target's name (5 times an address) unless it is "", then made-up names.
// It returns how many it tried and how many got each status.
func loginBurst(base string, addrs []string, target string, n, rate, workers int, done <-chan struct{}) (int, map[int]int) {
	clients := make([]*http.Client, len(addrs))
	for i, a := range addrs {
		clients[i] = fromAddress(a)
	}
	var pace <-chan time.Time
	if rate > 0 {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		pace = tick.C
	}
	var tried atomic.Int64
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				if pace != nil {
					<-pace
				}
				i := tried.Add(1) - 1
				if i >= int64(n) {
					select {
					case <-done:
						tried.Add(-1)
						return
					default:
					}
				}
				name := fmt.Sprintf("user-%d-%d", w, i)
				if target != "" && i < int64(5*len(addrs)) {
					name = target
				}
				body, _ := json.Marshal(map[string]string{"username": name, "password": fmt.Sprintf("Guess-%d-Wrong!", i)})
				code := 0
				res, err := clients[int(i)%len(clients)].Post(base+"api/auth/login", "application/json", strings.NewReader(string(body)))
				if err == nil {
					code = res.StatusCode
					res.Body.Close()
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return int(tried.Load()), codes
}

// A burst of failed logins from a few addresses (made-up names, and a
// signed-in operator's own name) does not disturb the operator: each of
// their requests succeeds and their event stream keeps delivering changes
// (a camera fails, a sensor is triggered) meanwhile. Every attempt is refused, the attacking addresses and the
// attacked name are locked out, the operator's own address is not (a
// colleague signs in from it afterwards) and the lockouts are listed and
// in the trail.
func TestLoginBurstLeavesSignedInUsersAlone(t *testing.T) {
	s := startStack(t, stackOptions{city: smallCity, hubCfg: func(c *config.Config) {
		// A burst lasts seconds, too short for the login rate (1/s after
		// 10) to let the default 20 failures through from one address.
		c.Auth.Lockout.AddressThreshold = 5
	}})
	s.waitAllOnline(t)
	op := signIn(t, s.hub, identity.AccountSpec{Name: "otto", Role: auth.Operator, Scope: auth.Everything})
	security := signIn(t, s.hub, identity.AccountSpec{Name: "sam", Role: auth.SecurityAdmin, Scope: auth.Everything})
	ev := op.events(t)
	attackers := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	_, cam := firstCamera(t, s)
	var sensor string
	for _, a := range s.sim.City().Agents {
		for _, d := range a.Sensors {
			sensor = d.ID
		}
	}

	done := make(chan struct{})
	var tried int
	var codes map[int]int
	var burst sync.WaitGroup
	burst.Go(func() { tried, codes = loginBurst(s.hub.ConsoleURL(), attackers, "otto", 1000, 500, 8, done) })

	// The operator works on during the burst: reads the device list over
	// and over, and sees a camera fail and recover on the stream.
	var reads, failed atomic.Int64
	stopReads := make(chan struct{})
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			select {
			case <-stopReads:
				return
			default:
			}
			var list console.DeviceList
			if err := op.fetch("api/devices", &list); err != nil || len(list.Devices) != s.deviceCount() {
				failed.Add(1)
				t.Errorf("the operator's read during the burst: %v (%d devices)", err, len(list.Devices))
			}
			reads.Add(1)
		}
	})
	if err := s.sim.Fault(sim.Fault{Device: cam, Fault: sim.FaultOffline}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 30*time.Second, cam+" offline during the burst", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeDevice && c.Device.ID == cam && c.To == wire.StatusOffline
	})
	if err := s.sim.Fault(sim.Fault{Device: sensor, Fault: sim.FaultTrigger}); err != nil {
		t.Fatal(err)
	}
	ev.await(t, 30*time.Second, sensor+" triggered during the burst", func(c fleet.Change) bool {
		return c.Kind == fleet.ChangeTrigger && c.Device.ID == sensor && c.Device.Triggered
	})
	close(done)
	burst.Wait()
	close(stopReads)
	reader.Wait()
	t.Logf("%d failed logins (by status %v) while the operator read the devices %d times", tried, codes, reads.Load())

	if tried < 1000 {
		t.Errorf("only %d logins tried", tried)
	}
	refused := 0
	for code, n := range codes {
		switch code {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusTooManyRequests:
			refused += n
		default:
			t.Errorf("%d login attempts got %d", n, code)
		}
	}
	if refused != tried || codes[http.StatusTooManyRequests] == 0 || codes[http.StatusUnauthorized] == 0 {
		t.Errorf("%d of %d attempts refused, by status %v: want all, some for bad credentials and some rate-limited", refused, tried, codes)
	}
	if reads.Load() == 0 || failed.Load() > 0 {
		t.Errorf("%d of %d reads failed", failed.Load(), reads.Load())
	}

	var lockouts struct {
		Lockouts []identity.Lockout `json:"lockouts"`
	}
	security.getJSON(t, "api/lockouts", &lockouts)
	var locked []string
	for _, l := range lockouts.Lockouts {
		locked = append(locked, string(l.Kind)+"/"+l.Key)
	}
	for _, want := range append([]string{"account/otto"}, prefixed("address/", attackers)...) {
		if !slices.Contains(locked, want) {
			t.Errorf("lockouts %v lack %s", locked, want)
		}
	}
	if slices.Contains(locked, "address/127.0.0.1") {
		t.Errorf("the operator's own address is locked: %v", locked)
	}
	// The operator's session outlives the lockout of their name; a
	// colleague signs in from the operator's address; the operator cannot
	// sign in again until the lockout ends.
	var me identity.Me
	op.getJSON(t, "api/auth/me", &me)
	signIn(t, s.hub, identity.AccountSpec{Name: "carla", Role: auth.Operator, Scope: auth.Everything})
	if _, err := login(s.hub.ConsoleURL(), "otto", testPassword, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("otto signed in again during the lockout of the name: %v", err)
	}
	page, err := s.hub.Audit().Query(context.Background(), audit.Filter{Action: "auth.lockout"})
	if err != nil || len(page.Records) < 1+len(attackers) {
		t.Errorf("lockouts in the trail: %d records (%v), want at least %d", len(page.Records), err, 1+len(attackers))
	}
}

func prefixed(prefix string, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = prefix + s
	}
	return out
}
