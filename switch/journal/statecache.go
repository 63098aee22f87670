package journal

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// stateCache keeps terminal states read from the journal, so that a financial request does not
// cost a read before its write-ahead record. It is safe to lose and safe with several nodes:
//
//   - every change of a terminal's state (sign-on, sign-off) is committed together with a
//     NOTIFY on the "terminal_state" channel; each node LISTENs and evicts the terminal;
//   - the node that made the change evicts it itself as soon as its commit returns, so the
//     terminal's next request on this node never sees the old keys or batch;
//   - the cache serves only while the LISTEN connection is up; when it drops the cache is
//     emptied and every request reads the journal until it is back;
//   - a read that overlaps an eviction is not cached (a generation counter), so an old row read
//     just before a change cannot outlive the change's notification.
type stateCache struct {
	mu   sync.Mutex
	m    map[string]*TerminalState
	gen  uint64
	live bool
}

func stateKey(mid, tid string) string { return mid + "|" + tid }

func (c *stateCache) get(key string) (*TerminalState, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[key]
	return st, c.gen, ok && c.live
}

func (c *stateCache) put(key string, st *TerminalState, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live && c.gen == gen {
		c.m[key] = st
	}
}

func (c *stateCache) evict(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, key)
}

// reset empties the cache and says whether it may serve.
func (c *stateCache) reset(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m = map[string]*TerminalState{}
	c.live = live
}

const stateChannel = "terminal_state"

// notifyStateOp queues the notification that a terminal's state changed (delivered at commit).
func notifyStateOp(b *pgx.Batch, mid, tid string) {
	b.Queue("SELECT pg_notify('"+stateChannel+"', $1)", stateKey(mid, tid))
}

// listenStates keeps a LISTEN connection open and evicts the terminals other nodes (and this
// one) change. It returns when ctx ends.
func (j *Journal) listenStates(ctx context.Context) {
	defer j.states.reset(false)
	for ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(ctx, j.Pool.Config().ConnConfig.Copy())
		if err == nil {
			if _, err = conn.Exec(ctx, "LISTEN "+stateChannel); err == nil {
				j.states.reset(true)
				for {
					n, err := conn.WaitForNotification(ctx)
					if err != nil {
						break
					}
					j.states.evict(n.Payload)
				}
			}
			j.states.reset(false)
			conn.Close(context.Background())
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
