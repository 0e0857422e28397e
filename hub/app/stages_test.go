package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStopNamesTheStageThatHangs: a stage that ignores cancellation is
// named in the error once the stop's time is used up, and the stages it
// depends on are still stopped, in reverse order.
func TestStopNamesTheStageThatHangs(t *testing.T) {
	var mu sync.Mutex
	var order []string
	polite := func(name string) stage {
		return stage{name, func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}}
	}
	release := make(chan struct{})
	defer close(release)
	stuck := stage{"stuck", func(context.Context) error { <-release; return nil }}
	failing := stage{"failing", func(ctx context.Context) error { <-ctx.Done(); return errors.New("flush failed") }}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := runStages(ctx, quiet(), []stage{polite("first"), failing, stuck, polite("last")}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "stuck: did not stop within 1s") || !strings.Contains(err.Error(), "failing: flush failed") {
		t.Fatalf("err = %v, want the hanging stage named and the failing one's error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "last,first" {
		t.Fatalf("stopped %v, want last then first", order)
	}
}
