package console_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// One headless Chromium for the whole package: each user gets a browser context of their own
// (cookies apart, like separate browsers), all in the one process.
var chrome struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	dir    string
	err    error
	skip   string
}

// chromiumPath finds Debian's chromium (or another Chromium-based browser on PATH).
func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func startChrome() {
	path := chromiumPath()
	if path == "" {
		chrome.skip = "no chromium on PATH: install Debian's chromium package (.ci/run does) to run the browser tests"
		return
	}
	chrome.dir, chrome.err = os.MkdirTemp("", "shoudan-chromium-")
	if chrome.err != nil {
		return
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(chrome.dir),
		chromedp.WindowSize(1200, 800),
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		chrome.err = fmt.Errorf("starting %s: %w", path, err)
		cancelCtx()
		cancelAlloc()
		return
	}
	chrome.ctx = ctx
	chrome.cancel = func() { cancelCtx(); cancelAlloc(); os.RemoveAll(chrome.dir) }
}

func stopChrome() {
	if chrome.cancel != nil {
		chrome.cancel()
	}
}

// tab is one user's browser: its own browser context (cookies) and one tab.
type tab struct {
	t   *testing.T
	e   *env
	ctx context.Context
	dl  string // download directory
}

func (e *env) browser(t *testing.T) *tab {
	t.Helper()
	if os.Getenv("TRACE_BROWSER") != "" {
		start := time.Now()
		defer func() { t.Logf("%s new browser", time.Since(start)) }()
	}
	chrome.once.Do(startChrome)
	if chrome.skip != "" {
		t.Skip(chrome.skip)
	}
	require.NoError(t, chrome.err)
	ctx, cancel := chromedp.NewContext(chrome.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	dl := t.TempDir()
	require.NoError(t, chromedp.Do(ctx)) // opens the tab in its own browser context
	yes := true
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllowAndName, BrowserContextID: chromedp.FromContext(ctx).BrowserContextID,
		DownloadPath: dl, EventsEnabled: &yes})
	require.NoError(t, err)
	return &tab{t: t, e: e, ctx: ctx, dl: dl}
}

// run runs browser actions with a deadline.
func (b *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if os.Getenv("TRACE_BROWSER") != "" {
		start := time.Now()
		defer func() { b.t.Logf("%s run %d actions", time.Since(start), len(actions)) }()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	require.NoError(b.t, chromedp.Do(ctx, actions...))
}

// value runs one action that returns a value, with a deadline.
func value[T any](b *tab, a chromedp.Action[T]) T {
	b.t.Helper()
	if os.Getenv("TRACE_BROWSER") != "" {
		start := time.Now()
		defer func() { b.t.Logf("%s value", time.Since(start)) }()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	require.NoError(b.t, err)
	return v
}

func (b *tab) open(path string) {
	b.t.Helper()
	b.run(chromedp.Navigate(b.e.base+path), chromedp.WaitReady(chromedp.CSS("body")))
}

// status opens path and returns the HTTP status the browser got.
func (b *tab) status(path string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(b.e.base+path))
	require.NoError(b.t, err, path)
	return int(resp.Status)
}

func (b *tab) text(sel string) string {
	b.t.Helper()
	return value(b, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
}

func (b *tab) html() string {
	b.t.Helper()
	return value(b, chromedp.OuterHTML(chromedp.CSS("html")))
}

// login fills the login form and submits it, as a user would.
func (b *tab) login(login, pw string) {
	b.t.Helper()
	b.open("/login")
	b.run(chromedp.SendKeys(chromedp.ID("login"), login), chromedp.SendKeys(chromedp.ID("password"), pw))
	b.click("#submit")
}

func (b *tab) as(login string) *tab {
	b.login(login, b.e.pw[login])
	require.Contains(b.t, b.text("#whoami"), login)
	return b
}

// click clicks a link or a form's button and waits for the page it leads to.
func (b *tab) click(sel string) int {
	b.t.Helper()
	if os.Getenv("TRACE_BROWSER") != "" {
		start := time.Now()
		defer func() { b.t.Logf("%s click %s", time.Since(start), sel) }()
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	require.NoError(b.t, err, "click %s", sel)
	return int(resp.Status)
}

// rows reads a table's body cells.
func (b *tab) rows(sel string) [][]string {
	b.t.Helper()
	return value(b, chromedp.Evaluate[[][]string](`Array.from(document.querySelectorAll(`+jsString(sel+` tbody tr`)+`)).map(tr => Array.from(tr.cells).map(td => td.innerText.trim()))`))
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// poll waits until a JavaScript condition holds on the page.
func (b *tab) poll(cond string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(100*time.Millisecond)))
	return err
}

// download clicks a link and waits for the browser's download of it to complete.
func (b *tab) download(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	progress := chromedp.BrowserEvents(ctx, browser.DownloadProgress)
	require.NoError(b.t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))))
	for ev, err := range progress {
		require.NoError(b.t, err, "download of %s", sel)
		if ev.State == browser.DownloadProgressStateCompleted {
			return filepath.Join(b.dl, ev.GUID)
		}
		require.NotEqual(b.t, browser.DownloadProgressStateCanceled, ev.State, "download of %s canceled", sel)
	}
	b.t.Fatalf("download of %s did not complete", sel)
	return ""
}

// screenshot saves the page as a PNG under $SHOUDAN_SCREENSHOTS (README images), when set.
func (b *tab) screenshot(name string) {
	b.t.Helper()
	dir := os.Getenv("SHOUDAN_SCREENSHOTS")
	if dir == "" {
		return
	}
	png := value(b, chromedp.CaptureScreenshot())
	require.NoError(b.t, os.MkdirAll(dir, 0o755))
	require.NoError(b.t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
}

func contains(rows [][]string, s string) bool {
	for _, r := range rows {
		if strings.Contains(strings.Join(r, " "), s) {
			return true
		}
	}
	return false
}
