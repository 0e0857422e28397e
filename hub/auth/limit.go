package auth

import "sync"

// Limiter bounds how many of something (websocket connections, live video
// sessions) one key (an account) holds at once, so no caller can exhaust
// what everyone shares.
type Limiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

// NewLimiter returns a limiter allowing max per key; max < 1 means no limit.
func NewLimiter(max int) *Limiter { return &Limiter{max: max, n: map[string]int{}} }

// Acquire takes one for key, or reports false when key holds the maximum.
// release gives it back; calling it more than once is harmless.
func (l *Limiter) Acquire(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.n[key] >= l.max {
		return nil, false
	}
	l.n[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.n[key]--; l.n[key] <= 0 {
				delete(l.n, key)
			}
		})
	}, true
}

// Max is the limit per key.
func (l *Limiter) Max() int { return l.max }
