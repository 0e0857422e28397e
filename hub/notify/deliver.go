package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/workorder"
)

// PayloadVersion is the version of Payload; it changes only when a field
// changes meaning or goes away.
const PayloadVersion = 1

// Payload is the JSON body of every webhook request.
type Payload struct {
	Version    int              `json:"version"`
	Event      alarm.EventKind  `json:"event"`
	Alarm      alarm.Alarm      `json:"alarm"`
	Transition alarm.Transition `json:"transition"`
	SentAt     time.Time        `json:"sent_at"` // first attempt; retries resend the same body
}

// maxRetryAfter caps a receiver's Retry-After: the hook's queue waits
// behind it, so a misconfigured receiver must not stall it for hours.
const maxRetryAfter = 5 * time.Minute

// IdempotencyKey identifies one transition of one alarm, the same on every
// attempt and on every hook, so a receiver can discard duplicates.
func IdempotencyKey(ev alarm.Event) string {
	return ev.Alarm.ID + "/" + string(ev.Transition.Action) + "/" + ev.Transition.At.UTC().Format(time.RFC3339Nano)
}

// WorkOrderPayload is the JSON body of a work-order webhook request.
type WorkOrderPayload struct {
	Version    int                  `json:"version"`
	Event      alarm.EventKind      `json:"event"` // workorder.open, workorder.close, workorder.breach
	WorkOrder  workorder.Order      `json:"work_order"`
	Transition workorder.Transition `json:"transition"`
	SentAt     time.Time            `json:"sent_at"`
}

// item is one event waiting for a hook: an alarm's or a work order's.
type item struct {
	kind    alarm.EventKind
	subject string // the alarm or order id, for logs
	key     string // Idempotency-Key
	encode  func(now time.Time) ([]byte, error)
}

func alarmItem(ev alarm.Event) item {
	return item{kind: ev.Kind, subject: ev.Alarm.ID, key: IdempotencyKey(ev), encode: func(now time.Time) ([]byte, error) { return encode(ev, now) }}
}

// workOrderItem is the item of a work-order event a hook may ask for.
func workOrderItem(ev workorder.Event) (item, bool) {
	kind := alarm.EventKind("workorder." + string(ev.Kind))
	if !slices.Contains([]alarm.EventKind{KindWorkOrderOpen, KindWorkOrderClose, KindWorkOrderBreach}, kind) {
		return item{}, false
	}
	key := ev.Order.ID + "/" + string(ev.Transition.Action) + "/" + ev.Transition.At.UTC().Format(time.RFC3339Nano)
	return item{kind: kind, subject: ev.Order.ID, key: key, encode: func(now time.Time) ([]byte, error) {
		b, err := json.Marshal(WorkOrderPayload{Version: PayloadVersion, Event: kind, WorkOrder: ev.Order, Transition: ev.Transition, SentAt: now.UTC()})
		if err != nil {
			return nil, fmt.Errorf("notify: encode work order %s: %w", ev.Order.ID, err)
		}
		return b, nil
	}}, true
}

// encode is the encode stage. The body is built once per event so that
// retries carry identical bytes: receivers that check an Idempotency-Key
// against the body then see a true duplicate.
func encode(ev alarm.Event, now time.Time) ([]byte, error) {
	b, err := json.Marshal(Payload{
		Version: PayloadVersion, Event: ev.Kind, Alarm: ev.Alarm, Transition: ev.Transition, SentAt: now.UTC(),
	})
	if err != nil {
		return nil, fmt.Errorf("notify: encode alarm %s: %w", ev.Alarm.ID, err)
	}
	return b, nil
}

// verdict is what an attempt's result means for the event.
type verdict int

const (
	delivered verdict = iota
	retry
	permanent
)

// classify maps an attempt's status (0 when the request failed) to a
// verdict. 408 and 429 are the receiver saying "later"; other 4xx mean the
// request itself is wrong, and sending it again cannot help. A 3xx is a
// misconfigured URL (redirects are not followed).
func classify(status int) verdict {
	switch {
	case status == 0, status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return retry
	case status >= 200 && status < 300:
		return delivered
	default:
		return permanent
	}
}

// backoff is the wait before retry number n (1-based): exponential from
// initial, capped at max, then "equal jitter" (half fixed, half random) so
// that hooks failing together do not retry in lockstep yet never retry at
// once.
func backoff(n int, initial, maxD time.Duration) time.Duration {
	d := initial
	for i := 1; i < n && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + rand.N(d-half+1)
}

// parseRetryAfter reads Retry-After as seconds or an HTTP date; zero when
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(v); err == nil {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// attempt is the result of one POST.
type attempt struct {
	status     int
	err        error // transport error; its text has no URL (which may hold a token)
	retryAfter time.Duration
}

// deliver runs the delivery stage for one event: attempts with backoff
// until delivered, rejected or out of attempts, then the accounting stage.
// It returns false only when ctx ended before the event was settled.
func (n *Notifier) deliver(ctx context.Context, h *hook, it item) bool {
	log := n.log.With("hook", h.cfg.Name, "subject", it.subject, "event", it.kind)
	body, err := it.encode(n.now())
	if err != nil {
		h.fail(ReasonEncode)
		log.Error("webhook event not sent", "err", err)
		return true
	}
	key := it.key
	var last attempt
	for try := 1; try <= h.cfg.MaxAttempts; try++ {
		if try > 1 {
			h.retries.Inc()
			wait := max(backoff(try-1, h.cfg.InitialBackoff, h.cfg.MaxBackoff), last.retryAfter)
			if n.wait(ctx, wait) != nil {
				return false
			}
		}
		last = n.post(ctx, h, body, key)
		if ctx.Err() != nil {
			return false
		}
		switch classify(last.status) {
		case delivered:
			h.sent.Inc()
			log.Debug("webhook delivered", "attempts", try)
			return true
		case permanent:
			h.fail(ReasonRejected)
			log.Error("webhook rejected event, not retrying", "status", last.status, "attempts", try)
			return true
		}
		log.Debug("webhook attempt failed, will retry", "attempt", try, "status", last.status, "err", last.err)
	}
	h.fail(ReasonExhausted)
	log.Error("webhook gave up on event", "attempts", h.cfg.MaxAttempts, "status", last.status, "err", last.err)
	return true
}

// post sends one attempt under the hook's per-attempt timeout.
func (n *Notifier) post(ctx context.Context, h *hook, body []byte, key string) attempt {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return attempt{err: errors.New("cannot build request")} // URL was validated; not expected
	}
	for k, v := range h.cfg.Headers {
		req.Header.Set(k, v)
	}
	// Set after the configured headers: these are the contract, not options.
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "citywatch-hub")
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// *url.Error quotes the URL, which may carry a token in its query.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return attempt{err: err}
	}
	defer resp.Body.Close()
	// Drain (bounded) so the connection is reused for the next attempt.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return attempt{status: resp.StatusCode, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), n.now())}
}
