package sim

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is an Injector that notes when each fault arrives.
type recorder struct {
	start time.Time
	fail  func(Fault) error // nil: accept everything

	mu   sync.Mutex
	got  []fired
	errs []error // what fail returned
}

type fired struct {
	At    time.Duration
	Fault Fault
}

func (r *recorder) Fault(f Fault) error {
	var err error
	if r.fail != nil {
		err = r.fail(f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, fired{time.Since(r.start), f})
	if err != nil {
		r.errs = append(r.errs, err)
	}
	return err
}

// fired returns what has arrived so far.
func (r *recorder) fired() ([]fired, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got), slices.Clone(r.errs)
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestScriptFiresInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		off := Fault{Device: "cam", Fault: FaultOffline}
		bad := Fault{Device: "nope", Fault: FaultOffline}
		rec := Fault{Device: "cam", Fault: FaultRecover}
		sc := Script{Loop: time.Minute, Steps: []Step{
			{At: 30 * time.Second, Fault: rec},
			{At: 10 * time.Second, Fault: off},
			{At: 20 * time.Second, Fault: bad}, // fails; the script goes on
		}}
		r := &recorder{start: time.Now(), fail: func(f Fault) error {
			if f.Device == "nope" {
				return ErrUnknownDevice
			}
			return nil
		}}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- sc.Run(ctx, r, discard) }()

		time.Sleep(95 * time.Second) // fake time: one and a half rounds
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		s := time.Second
		want := []fired{{10 * s, off}, {20 * s, bad}, {30 * s, rec}, {70 * s, off}, {80 * s, bad}, {90 * s, rec}}
		if got, _ := r.fired(); !reflect.DeepEqual(got, want) {
			t.Errorf("got  %v\nwant %v", got, want)
		}
	})
}

func TestScriptOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{start: time.Now()}
		sc := Script{Steps: []Step{{At: time.Hour, Fault: Fault{Agent: "a", Fault: FaultDisconnect}}}}
		if err := sc.Run(t.Context(), r, discard); err != nil {
			t.Fatal(err)
		}
		if got, _ := r.fired(); len(got) != 1 || got[0].At != time.Hour {
			t.Errorf("got %v", got)
		}
	})
}

func TestScriptInvalid(t *testing.T) {
	sc := Script{Loop: time.Minute, Steps: []Step{{At: time.Minute}}}
	if err := sc.Run(t.Context(), &recorder{}, discard); err == nil {
		t.Error("a step at the loop length was accepted")
	}
}

func TestDemoScript(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		city, err := GenerateCity(CityOptions{})
		if err != nil {
			t.Fatal(err)
		}
		onvif, _ := DemoONVIF(city)
		for _, st := range DemoScript(city).Steps {
			_, ev := cameraEvents[st.Fault.Fault]
			if _, cam := onvif[st.Fault.Device]; ev || cam {
				t.Errorf("DemoScript alone has %+v: the ONVIF cameras' steps are DemoONVIFSteps'", st)
			}
		}
		s, err := New(Options{BrokerURL: "tcp://127.0.0.1:1883", ONVIF: onvif, Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{start: time.Now(), fail: s.Fault}
		sc := DemoScript(s.City())
		sc.Steps = append(sc.Steps, DemoONVIFSteps(s.City())...)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- sc.Run(ctx, r, discard) }()

		// Everything the console should show within a minute has started.
		time.Sleep(time.Minute)
		kinds := make(map[string]bool)
		for _, a := range s.Faults() {
			kinds[a.Fault] = true
		}
		got, _ := r.fired()
		for _, f := range got {
			kinds[f.Fault.Fault] = true // the trigger at 0:05 is restored by now
		}
		for _, want := range []string{FaultOffline, FaultSupervisionLoss, FaultDisconnect, FaultTrigger, FaultAuth, FaultMotion} {
			if !kinds[want] {
				t.Errorf("no %s in the first minute", want)
			}
		}

		// A round leaves the city healthy; the next one starts over.
		time.Sleep(DemoLoop - time.Minute - time.Millisecond)
		if active := s.Faults(); len(active) != 0 {
			t.Errorf("faults left at the end of a round: %v", active)
		}
		firstRound, _ := r.fired()
		if !slices.ContainsFunc(firstRound, func(f fired) bool {
			skew, ok := onvif[f.Fault.Device]
			return f.Fault.Fault == FaultTamper && ok && skew == 0
		}) {
			t.Error("no ONVIF camera (on time) reported tampering in a round")
		}
		time.Sleep(10 * time.Second)
		cancel()
		<-done
		got, errs := r.fired()
		if len(got) == len(firstRound) {
			t.Error("the second round did not start")
		}
		// Every step hit a real target, in order.
		for _, err := range errs {
			t.Error(err)
		}
		for i, f := range got {
			if i > 0 && f.At < got[i-1].At {
				t.Errorf("step %d at %v fired after %v", i, f.At, got[i-1].At)
			}
		}
	})
}
