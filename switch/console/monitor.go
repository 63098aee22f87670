package console

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
)

// MonitorRows is how many of the newest transactions the live monitor shows.
const MonitorRows = 20

// hub turns the journal's notifications (LISTEN on journal.TxnChannel: one per group commit
// that wrote transactions, from every node) into wake-ups for the open monitors. Wake-ups are
// coalesced: a monitor re-reads its newest rows at most every 200 ms.
type hub struct {
	c      *Console
	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newHub(c *Console) *hub { return &hub{c: c, subs: map[chan struct{}]struct{}{}} }

func (h *hub) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go func() {
		defer close(h.done)
		for ctx.Err() == nil {
			if err := h.listen(ctx); err != nil && ctx.Err() == nil {
				h.c.Log.Warn("console monitor: LISTEN connection lost, reconnecting", "err", err.Error())
				h.wake() // whatever was missed meanwhile: re-read
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return nil
}

func (h *hub) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
	}
}

func (h *hub) listen(ctx context.Context) error {
	conn, err := h.c.Journal.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+journal.TxnChannel); err != nil {
		return err
	}
	defer conn.Exec(context.Background(), "UNLISTEN "+journal.TxnChannel)
	for {
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			return err
		}
		h.wake()
	}
}

func (h *hub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // already woken
		}
	}
}

func (h *hub) subscribe() (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

type monitorData struct {
	Rows []*monitorRow
}

type monitorRow struct {
	T    *journal.Txn
	Name string
}

// newest reads the newest transactions the user may see.
func (c *Console) newest(ctx context.Context, p *page) ([]*monitorRow, error) {
	qf, err := scope(query.Filter{Limit: MonitorRows}, p.User)
	if err != nil {
		return nil, err
	}
	pg, err := query.List(ctx, c.Journal, qf)
	if err != nil {
		return nil, err
	}
	out := make([]*monitorRow, len(pg.Rows))
	for i, t := range pg.Rows {
		out[i] = &monitorRow{T: t, Name: p.merchantName(t.MID)}
	}
	return out, nil
}

func (c *Console) monitorPage(w http.ResponseWriter, r *http.Request, p *page) {
	p.Title = p.T("monitor")
	rows, err := c.newest(r.Context(), p)
	if err != nil {
		c.fail(w, p, http.StatusServiceUnavailable, err.Error())
		return
	}
	p.Data = &monitorData{Rows: rows}
	c.render(w, p, "monitor.html", http.StatusOK)
}

// monitorEvents is the monitor's server-sent event stream: an "rows" event with the rendered
// table body whenever what the user would see changed, and a comment every 15 s to keep proxies
// from closing the stream.
func (c *Console) monitorEvents(w http.ResponseWriter, r *http.Request, p *page) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	fl.Flush()
	wake, unsubscribe := c.monitor.subscribe()
	defer unsubscribe()
	last := ""
	send := func() error {
		rows, err := c.newest(r.Context(), p)
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := c.tmpl.ExecuteTemplate(&b, "monitor_rows", &page{Lang: p.Lang, User: p.User, Session: p.Session, c: c, Data: &monitorData{Rows: rows}}); err != nil {
			return err
		}
		if b.String() == last {
			return nil
		}
		last = b.String()
		fmt.Fprint(w, "event: rows\n")
		for _, line := range strings.Split(strings.TrimRight(last, "\n"), "\n") {
			fmt.Fprintf(w, "data: %s\n", line)
		}
		fmt.Fprint(w, "\n")
		fl.Flush()
		return nil
	}
	if err := send(); err != nil {
		return
	}
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	// a session check every minute: a stream does not outlive its session
	check := time.NewTicker(time.Minute)
	defer check.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-wake:
			time.Sleep(200 * time.Millisecond) // coalesce a burst of commits
			select {
			case <-wake:
			default:
			}
			if err := send(); err != nil {
				return
			}
		case <-keep.C:
			fmt.Fprint(w, ": keep-alive\n\n")
			fl.Flush()
		case <-check.C:
			if _, err := c.Users.Session(r.Context(), p.Session.Token); err != nil {
				fmt.Fprint(w, "event: expired\ndata: \n\n")
				fl.Flush()
				return
			}
		}
	}
}
