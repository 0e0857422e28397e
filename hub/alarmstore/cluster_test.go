package alarmstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/citywatch/citywatch/hub/alarm"
	"github.com/citywatch/citywatch/hub/internal/schema"
)

// byAgent is a cluster's partitioner in miniature: agent agN is in
// partition N mod 3.
func byAgent(a alarm.Alarm) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(a.Agent, "ag"))
	return n % 3
}

// hubWrites is what a test recorded, as the database should hold it.
type hubWrites struct {
	alarms map[string]alarm.Alarm
	trails map[string][]alarm.Transition
}

// recordHub records, through s, rounds transitions of alarms prefix1 to
// prefix6 whose agents are ag(first) to ag(first+5), round after round;
// the alarms named in closed close at their last transition. It returns
// what it recorded.
func recordHub(t *testing.T, s *Store, prefix string, first, rounds int, closed ...int) hubWrites {
	w := hubWrites{alarms: map[string]alarm.Alarm{}, trails: map[string][]alarm.Transition{}}
	for j := 1; j <= rounds; j++ {
		for i := 1; i <= 6; i++ {
			a, tr := sample(i, j)
			a.ID, a.Agent = prefix+strconv.Itoa(i), "ag"+strconv.Itoa(first+i-1)
			if j == rounds && slices.Contains(closed, i) {
				a.State, tr.To = alarm.ClearedAck, alarm.ClearedAck
			}
			if !s.Record(a, tr) {
				t.Error("Record dropped a transition")
			}
			w.alarms[a.ID] = a
			w.trails[a.ID] = append(w.trails[a.ID], tr)
		}
	}
	return w
}

// open returns the open alarms of parts, by id, and their trails.
func (w hubWrites) open(parts ...int) ([]alarm.Alarm, map[string][]alarm.Transition) {
	var alarms []alarm.Alarm
	trails := map[string][]alarm.Transition{}
	for _, a := range w.alarms {
		if !a.State.Closed() && (parts == nil || slices.Contains(parts, byAgent(a))) {
			alarms = append(alarms, a)
			trails[a.ID] = w.trails[a.ID]
		}
	}
	slices.SortFunc(alarms, func(a, b alarm.Alarm) int { return strings.Compare(a.ID, b.ID) })
	return alarms, trails
}

// TestTwoHubs has two hubs write one database at once, each its own
// partitions' alarms with ids of its own prefix, and a third, taking
// partitions over, read them back.
func TestTwoHubs(t *testing.T) { eachBackend(t, testTwoHubs) }

func testTwoHubs(t *testing.T, db string) {
	ctx := context.Background()
	a := openWith(t, db, Options{Partition: byAgent})
	b := openWith(t, db, Options{Partition: byAgent})
	stopA, stopB := run(t, a), run(t, b)
	var w, wb hubWrites
	var wg sync.WaitGroup
	wg.Go(func() { w = recordHub(t, a, "Ahub-a.", 1, 20, 4) })
	wg.Go(func() { wb = recordHub(t, b, "Ahub-b.", 7, 20, 1, 2, 3) })
	wg.Wait()
	stopA()
	stopB()
	maps.Copy(w.alarms, wb.alarms)
	maps.Copy(w.trails, wb.trails)

	c := openWith(t, db, Options{Partition: byAgent})
	defer c.Close()
	for _, parts := range [][]int{{1}, {0, 2}, {0, 1, 2}, {5}} {
		t.Run(fmt.Sprint(parts), func(t *testing.T) {
			got, trails, err := c.LoadPartitions(ctx, parts)
			if err != nil {
				t.Fatal(err)
			}
			want, wantTrails := w.open(parts...)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("alarms %v, want %v", ids(got), ids(want))
			}
			if !reflect.DeepEqual(trails, wantTrails) {
				t.Errorf("trails differ")
			}
		})
	}
	// Hub a's ag1 and ag4 are partition 1, ag4's alarm closed; hub b's
	// ag7 and ag10 likewise, ag7's alarm closed.
	if got, _, _ := c.LoadPartitions(ctx, []int{1}); fmt.Sprint(ids(got)) != "[Ahub-a.1 Ahub-b.4]" {
		t.Errorf("partition 1: %v, want [Ahub-a.1 Ahub-b.4]", ids(got))
	}
	if got, trails, err := c.LoadPartitions(ctx, nil); err != nil || len(got) != 0 || len(trails) != 0 {
		t.Errorf("no partitions: %v, %d trails, %v", ids(got), len(trails), err)
	}

	open, err := c.LoadOpen(ctx)
	if want, _ := w.open(); err != nil || !reflect.DeepEqual(open, want) {
		t.Errorf("LoadOpen = %v, %v; want %v", ids(open), err, ids(want))
	}

	closed, trail, err := c.Alarm(ctx, "Ahub-b.2")
	if err != nil || !reflect.DeepEqual(closed, w.alarms["Ahub-b.2"]) || !reflect.DeepEqual(trail, w.trails["Ahub-b.2"]) {
		t.Errorf("Alarm(Ahub-b.2) = %+v, %d transitions, %v", closed, len(trail), err)
	}
	if _, _, err := c.Alarm(ctx, "Ahub-c.1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Alarm of a missing id: err = %v, want ErrNotFound", err)
	}

	for prefix, want := range map[string]uint64{"Ahub-a.": 7, "Ahub-b.": 7, "A": 0, "Ahub-c.": 0} {
		if got, err := c.NextID(ctx, prefix); err != nil || got != want {
			t.Errorf("NextID(%q) = %d, %v; want %d", prefix, got, err, want)
		}
	}
	if _, _, next, err := c.Load(0); err != nil || next != 0 {
		t.Errorf("Load's next id = %d, %v; want 0: no hub wrote ids of prefix A", next, err)
	}
}

func ids(alarms []alarm.Alarm) []string {
	out := make([]string, len(alarms))
	for i, a := range alarms {
		out[i] = a.ID
	}
	return out
}

// TestOpenConcurrently has hubs start together against a new database:
// each migration runs once, and every hub opens it.
func TestOpenConcurrently(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			for range 3 {
				db := b.db(t)
				const hubs = 4
				errs := make(chan error, hubs)
				for range hubs {
					go func() {
						s, err := OpenWith(db, Options{})
						if err == nil {
							err = s.Close()
						}
						errs <- err
					}()
				}
				for range hubs {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
				s := open(t, db)
				var versions, distinct int
				if err := s.db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_version`).Scan(&versions, &distinct); err != nil {
					t.Fatal(err)
				}
				s.Close()
				if versions != len(migrations) || distinct != len(migrations) {
					t.Errorf("%d migrations recorded (%d distinct), want %d once each", versions, distinct, len(migrations))
				}
			}
		})
	}
}

// TestUpgradeKeepsNextID opens a database of the schema before id
// prefixes: the one next id it kept becomes prefix A's.
func TestUpgradeKeepsNextID(t *testing.T) {
	old := migrations[:3]
	eachBackend(t, func(t *testing.T, db string) {
		var (
			c   *sql.DB
			err error
		)
		if schema.IsPostgres(db) {
			c, err = schema.OpenPostgres(db, old, postgres)
		} else {
			c, err = schema.Open(db, old)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Exec(`INSERT INTO meta (name, value) VALUES ('next_id', 42)`)
		if err := errors.Join(err, c.Close()); err != nil {
			t.Fatal(err)
		}
		s := open(t, db)
		defer s.Close()
		if _, _, next, err := s.Load(0); err != nil || next != 42 {
			t.Errorf("Load's next id = %d, %v; want 42", next, err)
		}
		if next, err := s.NextID(context.Background(), "A"); err != nil || next != 42 {
			t.Errorf("NextID(A) = %d, %v; want 42", next, err)
		}
	})
}

func TestSplitID(t *testing.T) {
	for _, c := range []struct {
		id     string
		prefix string
		seq    uint64
		ok     bool
	}{
		{"A17", "A", 17, true},
		{"A007", "A", 7, true},
		{"Ahub-a.17", "Ahub-a.", 17, true},
		{"Ahub-2.5", "Ahub-2.", 5, true},
		{"A", "", 0, false},
		{"17", "", 0, false},
		{"", "", 0, false},
		{"A17x", "", 0, false},
		{"A9223372036854775806", "A", 9223372036854775806, true},
		{"A9223372036854775807", "", 0, false}, // its successor does not fit a BIGINT
		{"A99999999999999999999", "", 0, false},
	} {
		prefix, seq, ok := splitID(c.id)
		if prefix != c.prefix || seq != c.seq || ok != c.ok {
			t.Errorf("splitID(%q) = %q, %d, %v; want %q, %d, %v", c.id, prefix, seq, ok, c.prefix, c.seq, c.ok)
		}
		// The engine's own parse agrees on prefix A.
		if n, ok := alarm.IDSeq(c.id); ok && c.ok && (c.prefix != "A" || n != c.seq) {
			t.Errorf("alarm.IDSeq(%q) = %d, splitID %q, %d", c.id, n, prefix, seq)
		}
	}
}
