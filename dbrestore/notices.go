package dbrestore

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// Notices counts the notices a server sends on a connection (NOTICE, WARNING, INFO, ...)
// by severity, and keeps none of their text: production's code that runs on staging (a
// trigger the post-restore SQL fires, a function it calls, a DO block) prints whatever
// RAISE is given, row values too, and what restage says about a restore goes into
// reports that are mailed. Pass its OnNotice as pgconn.Config.OnNotice. The zero value
// is ready; it is safe for concurrent use.
type Notices struct {
	mu sync.Mutex
	n  map[string]int
}

// OnNotice counts n.
func (c *Notices) OnNotice(_ *pgconn.PgConn, n *pgconn.Notice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[n.Severity]++
}

// Take returns what was counted since the last Take ("6 server notices (INFO 2, NOTICE
// 2, WARNING 2), their text withheld"; "" when none) and counts from zero again.
func (c *Notices) Take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.n) == 0 {
		return ""
	}
	total := 0
	var by []string
	for _, sev := range slices.Sorted(maps.Keys(c.n)) {
		total += c.n[sev]
		by = append(by, fmt.Sprintf("%s %d", sev, c.n[sev]))
	}
	c.n = nil
	noun := "notices"
	if total == 1 {
		noun = "notice"
	}
	return fmt.Sprintf("%d server %s (%s), their text withheld", total, noun, strings.Join(by, ", "))
}
