package terminals

import (
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/shoudan/shoudan/spec/keys"
	"gopkg.in/yaml.v3"
)

// Spec is the registry as an operator writes it: the rules, qps_whitelist, merchants, terminals
// and load_terminals sections of the config file, and what the registry database's API edits.
// Values are kept as written ("1000.00", "2026-01-05", omitted defaults); Build validates all of
// it with one set of rules, whichever front end the spec came from.
type Spec struct {
	Rules     RulesSpec
	Whitelist []WhitelistSpec
	Merchants []MerchantSpec
	Terminals []TerminalSpec
	Load      *LoadSpec

	rulesNode, whitelistNode *yaml.Node // where the sections were read from, for error lines
}

// RulesSpec is the rules section. Empty fields keep protocol.md §7's defaults.
type RulesSpec struct {
	CashMCCs         []string `yaml:"cash_mccs,omitempty,flow"`
	QPSLimit         string   `yaml:"qps_limit,omitempty"`
	MinSDK           string   `yaml:"min_sdk_version,omitempty"`
	RefundWindowDays *int     `yaml:"refund_window_days,omitempty"`
}

// WhitelistSpec is one qps_whitelist entry: a merchant's 双免 whitelist registration date.
type WhitelistSpec struct {
	MID  string
	Date string // YYYY-MM-DD, effective the next day
}

// MerchantSpec is one merchants entry.
type MerchantSpec struct {
	MID      string `yaml:"mid"`
	Name     string `yaml:"name,omitempty"`
	NameEN   string `yaml:"name_en,omitempty"`
	MCC      string `yaml:"mcc,omitempty"` // default: digits 8–11 of the MID
	Enabled  *bool  `yaml:"enabled,omitempty"`
	Direct   *bool  `yaml:"direct,omitempty"`
	QPS      bool   `yaml:"qps,omitempty"`
	QPSLimit string `yaml:"qps_limit,omitempty"` // this merchant's no-PIN limit; default rules.qps_limit
	Refund   *bool  `yaml:"refund,omitempty"`
	Acquirer string `yaml:"acquirer,omitempty"` // default 48020000
	Group    string `yaml:"group,omitempty"`    // 集团号: merchants of one group get a group statement

	src *entrySource
}

// TerminalSpec is one terminals entry. The TMK is a key block wrapped under the security
// module's KEK or "demo" (tmk), or that text sealed under the deployment's journal key
// (tmk_sealed, as the registry database and `shoudan terminals export` keep it); never clear.
type TerminalSpec struct {
	TID       string `yaml:"tid"`
	MID       string `yaml:"mid"`
	Env       string `yaml:"env,omitempty"` // default production
	Serial    string `yaml:"serial"`
	TMK       string `yaml:"tmk,omitempty"`
	TMKSealed string `yaml:"tmk_sealed,omitempty"`
	QPS       bool   `yaml:"qps,omitempty"`
	Enabled   *bool  `yaml:"enabled,omitempty"`

	src *entrySource
}

// LoadSpec is load_terminals: count generated terminals for `shoudan pos load`.
type LoadSpec struct {
	Count     int    `yaml:"count"`
	MID       string `yaml:"mid"`
	Env       string `yaml:"env,omitempty"`
	TMK       string `yaml:"tmk,omitempty"`
	TMKSealed string `yaml:"tmk_sealed,omitempty"`
	QPS       bool   `yaml:"qps,omitempty"`

	src *entrySource
}

// entrySource is where an entry was read from: its YAML node and its key ("merchants[3]").
type entrySource struct {
	node *yaml.Node
	key  string
}

// KeyOpener opens a sealed TMK (tmk_sealed). Build without one accepts sealed keys by form only.
type KeyOpener func(sealed []byte) ([]byte, error)

// Bool returns a pointer to b, for the optional flags of a spec.
func Bool(b bool) *bool { return &b }

// Merchant returns the spec's entry for mid, nil when absent.
func (s *Spec) Merchant(mid string) *MerchantSpec {
	for i := range s.Merchants {
		if s.Merchants[i].MID == mid {
			return &s.Merchants[i]
		}
	}
	return nil
}

// Terminal returns the spec's entry for tid of mid, nil when absent.
func (s *Spec) Terminal(tid, mid string) *TerminalSpec {
	for i := range s.Terminals {
		if s.Terminals[i].TID == tid && s.Terminals[i].MID == mid {
			return &s.Terminals[i]
		}
	}
	return nil
}

// PutMerchant adds m or replaces the entry with its MID.
func (s *Spec) PutMerchant(m MerchantSpec) {
	if old := s.Merchant(m.MID); old != nil {
		*old = m
		return
	}
	s.Merchants = append(s.Merchants, m)
}

// PutTerminal adds t or replaces the entry with its TID and MID.
func (s *Spec) PutTerminal(t TerminalSpec) {
	if old := s.Terminal(t.TID, t.MID); old != nil {
		*old = t
		return
	}
	s.Terminals = append(s.Terminals, t)
}

// PutAll upserts many entries at once (an import): merchants by MID, terminals by TID and MID.
func (s *Spec) PutAll(ms []MerchantSpec, ts []TerminalSpec) {
	mi := make(map[string]int, len(s.Merchants))
	for i, m := range s.Merchants {
		mi[m.MID] = i
	}
	for _, m := range ms {
		if i, ok := mi[m.MID]; ok {
			s.Merchants[i] = m
		} else {
			mi[m.MID] = len(s.Merchants)
			s.Merchants = append(s.Merchants, m)
		}
	}
	ti := make(map[string]int, len(s.Terminals))
	for i, t := range s.Terminals {
		ti[t.TID+"|"+t.MID] = i
	}
	for _, t := range ts {
		if i, ok := ti[t.TID+"|"+t.MID]; ok {
			s.Terminals[i] = t
		} else {
			ti[t.TID+"|"+t.MID] = len(s.Terminals)
			s.Terminals = append(s.Terminals, t)
		}
	}
}

// WhitelistDate is mid's 双免 whitelist registration date as written, "" when not registered.
func (s *Spec) WhitelistDate(mid string) string {
	for _, w := range s.Whitelist {
		if w.MID == mid {
			return w.Date
		}
	}
	return ""
}

// SetWhitelist registers mid on the 双免 whitelist on day (YYYY-MM-DD); "" removes it.
func (s *Spec) SetWhitelist(mid, day string) {
	for i, w := range s.Whitelist {
		if w.MID == mid {
			if day == "" {
				s.Whitelist = slices.Delete(s.Whitelist, i, i+1)
			} else {
				s.Whitelist[i].Date = day
			}
			return
		}
	}
	if day != "" {
		s.Whitelist = append(s.Whitelist, WhitelistSpec{MID: mid, Date: day})
	}
}

// Clone is a deep copy (edits of the copy never reach the original). The copy forgets where its
// entries were read from: its errors name entries, not lines of a file.
func (s *Spec) Clone() *Spec {
	c := *s
	c.rulesNode, c.whitelistNode = nil, nil
	c.Rules.CashMCCs = slices.Clone(s.Rules.CashMCCs)
	if s.Rules.RefundWindowDays != nil {
		c.Rules.RefundWindowDays = new(int)
		*c.Rules.RefundWindowDays = *s.Rules.RefundWindowDays
	}
	c.Whitelist = slices.Clone(s.Whitelist)
	c.Merchants = slices.Clone(s.Merchants)
	c.Terminals = slices.Clone(s.Terminals)
	for i := range c.Merchants {
		m := &c.Merchants[i]
		m.Enabled, m.Direct, m.Refund = cloneBool(m.Enabled), cloneBool(m.Direct), cloneBool(m.Refund)
		m.src = nil
	}
	for i := range c.Terminals {
		c.Terminals[i].Enabled = cloneBool(c.Terminals[i].Enabled)
		c.Terminals[i].src = nil
	}
	if s.Load != nil {
		l := *s.Load
		l.src = nil
		c.Load = &l
	}
	return &c
}

func cloneBool(b *bool) *bool {
	if b == nil {
		return nil
	}
	v := *b
	return &v
}

// Build validates the whole spec and builds the immutable snapshot it describes. The first
// problem is returned as a *ConfigError naming the entry, the field, what was expected and what
// was found (and the line, when the entry was read from a file).
func (s *Spec) Build(open KeyOpener) (*Registry, error) {
	rules, err := s.Rules.build(s.rulesNode)
	if err != nil {
		return nil, err
	}
	ms := make([]Merchant, 0, len(s.Merchants))
	byMID := make(map[string]*Merchant, len(s.Merchants))
	for i := range s.Merchants {
		m, err := s.Merchants[i].build(i)
		if err != nil {
			return nil, err
		}
		if byMID[m.MID] != nil {
			return nil, s.Merchants[i].bad(i, "mid", "repeats an earlier merchant")
		}
		ms = append(ms, m)
		byMID[m.MID] = &ms[len(ms)-1]
	}
	for i, w := range s.Whitelist {
		d, err := time.ParseInLocation("2006-01-02", w.Date, time.Local)
		if err != nil {
			return nil, s.whitelistBad(i, fmt.Sprintf("expected a date YYYY-MM-DD, found %q", w.Date))
		}
		m := byMID[w.MID]
		if m == nil {
			return nil, s.whitelistBad(i, "no merchant with this MID")
		}
		m.QPSRegistered = d
	}
	ts := make([]Terminal, 0, len(s.Terminals))
	seen := make(map[string]bool, len(s.Terminals))
	for i := range s.Terminals {
		t, err := s.Terminals[i].build(i, open)
		if err != nil {
			return nil, err
		}
		if seen[t.TID+"|"+t.MID] {
			return nil, s.Terminals[i].bad(i, "tid", "repeats an earlier terminal of the same merchant")
		}
		seen[t.TID+"|"+t.MID] = true
		if byMID[t.MID] == nil {
			return nil, s.Terminals[i].bad(i, "mid", fmt.Sprintf("expected a registered merchant, found %q", t.MID))
		}
		ts = append(ts, t)
	}
	var load *loadInfo
	if s.Load != nil {
		var err error
		if load, err = s.Load.build(open); err != nil {
			return nil, err
		}
		if load != nil && byMID[load.MID] == nil {
			return nil, s.Load.bad("mid", fmt.Sprintf("expected a registered merchant, found %q", s.Load.MID))
		}
	}
	r := NewRegistry(rules, ms, ts)
	r.spec = s.Clone()
	if load != nil {
		r.load, r.generated = load, generate(load)
	}
	return r, nil
}

func (r RulesSpec) build(n *yaml.Node) (Rules, error) {
	out := DefaultRules()
	bad := func(field, why string) error {
		return &ConfigError{Line: keyLine(n, field), Key: "rules." + field, Field: field, Entity: "rules", Reason: why}
	}
	if r.CashMCCs != nil {
		for _, m := range r.CashMCCs {
			if !digits(m, 4) {
				return out, bad("cash_mccs", fmt.Sprintf("expected 4-digit MCCs, found %q", m))
			}
		}
		out.CashMCCs = slices.Clone(r.CashMCCs)
	}
	if r.QPSLimit != "" {
		fen, err := ParseAmount(r.QPSLimit)
		if err != nil {
			return out, bad("qps_limit", err.Error())
		}
		out.QPSLimit = fen
	}
	if r.MinSDK != "" {
		v, err := ParseVersion(r.MinSDK)
		if err != nil {
			return out, bad("min_sdk_version", err.Error())
		}
		out.MinSDK = v
	}
	if r.RefundWindowDays != nil {
		if *r.RefundWindowDays < 1 || *r.RefundWindowDays > 3660 {
			return out, bad("refund_window_days", fmt.Sprintf("expected 1..3660 days, found %d", *r.RefundWindowDays))
		}
		out.RefundWindowDays = *r.RefundWindowDays
	}
	return out, nil
}

func (s *Spec) whitelistBad(i int, why string) error {
	w := s.Whitelist[i]
	e := &ConfigError{Key: "qps_whitelist." + w.MID, Field: "qps_whitelist", Entity: "merchant " + w.MID, Reason: why}
	if n := s.whitelistNode; n != nil && 2*i+1 < len(n.Content) {
		e.Line = n.Content[2*i+1].Line
	}
	return e
}

func (m *MerchantSpec) bad(i int, field, why string) error {
	return badEntry(m.src, fmt.Sprintf("merchants[%d]", i), "merchant "+m.MID, field, why)
}

func (t *TerminalSpec) bad(i int, field, why string) error {
	return badEntry(t.src, fmt.Sprintf("terminals[%d]", i), "terminal "+t.TID+" of merchant "+t.MID, field, why)
}

func (l *LoadSpec) bad(field, why string) error {
	return badEntry(l.src, "load_terminals", "load_terminals", field, why)
}

func badEntry(src *entrySource, key, entity, field, why string) error {
	e := &ConfigError{Key: key + "." + field, Field: field, Entity: entity, Reason: why}
	if src != nil {
		e.Line, e.Key = keyLine(src.node, field), src.key+"."+field
	}
	return e
}

func (m *MerchantSpec) build(i int) (Merchant, error) {
	if len(m.MID) != 15 || !printableASCII(m.MID) {
		return Merchant{}, m.bad(i, "mid", fmt.Sprintf("expected 15 characters, found %q", m.MID))
	}
	mcc := m.MCC
	if mcc == "" {
		mcc = m.MID[7:11] // digits 8–11 of the MID
	}
	if !digits(mcc, 4) {
		return Merchant{}, m.bad(i, "mcc", fmt.Sprintf("expected a 4-digit MCC, found %q", mcc))
	}
	acq := m.Acquirer
	if acq == "" {
		acq = "48020000"
	}
	if !digits(acq, len(acq)) || len(acq) > 11 {
		return Merchant{}, m.bad(i, "acquirer", fmt.Sprintf("expected up to 11 digits, found %q", acq))
	}
	if len(m.Name) > 200 || len(m.NameEN) > 200 {
		return Merchant{}, m.bad(i, "name", "expected a name of at most 200 bytes")
	}
	if len(m.Group) > 32 || !printableASCII(m.Group) {
		return Merchant{}, m.bad(i, "group", fmt.Sprintf("expected a group number (集团号) of up to 32 printable ASCII characters, found %q", m.Group))
	}
	var limit int64
	if m.QPSLimit != "" {
		fen, err := ParseAmount(m.QPSLimit)
		if err != nil {
			return Merchant{}, m.bad(i, "qps_limit", err.Error())
		}
		limit = fen
	}
	return Merchant{MID: m.MID, Name: m.Name, NameEN: m.NameEN, MCC: mcc, Enabled: deref(m.Enabled, true),
		Direct: deref(m.Direct, true), QPS: m.QPS, QPSLimit: limit, RefundAllowed: deref(m.Refund, true), Acquirer: acq, Group: m.Group}, nil
}

func (t *TerminalSpec) build(i int, open KeyOpener) (Terminal, error) {
	if len(t.TID) != 8 || !printableASCII(t.TID) {
		return Terminal{}, t.bad(i, "tid", fmt.Sprintf("expected 8 characters, found %q", t.TID))
	}
	env := Environment(t.Env)
	if env == "" {
		env = Production
	}
	if env != Production && env != Test {
		return Terminal{}, t.bad(i, "env", fmt.Sprintf("expected production or test, found %q", t.Env))
	}
	if t.Serial == "" || len(t.Serial) > 50 || !printableASCII(t.Serial) {
		return Terminal{}, t.bad(i, "serial", fmt.Sprintf("expected a hardware serial number of 1 to 50 characters, found %q", t.Serial))
	}
	tmk, demo, field, err := terminalKey(t.TMK, t.TMKSealed, open)
	if err != nil {
		return Terminal{}, t.bad(i, field, err.Error())
	}
	return Terminal{TID: t.TID, MID: t.MID, Env: env, Serial: t.Serial, TMK: tmk, DemoTMK: demo, QPS: t.QPS, Enabled: deref(t.Enabled, true)}, nil
}

// terminalKey reads a TMK given as written (tmk: a KB1 block or demo) or sealed under the
// journal key by the registry database or an export (tmk_sealed, the same text sealed); a
// failure names the field. A clear key is refused: it is entered with `shoudan keys import-tmk`.
func terminalKey(text, sealedHex string, open KeyOpener) (keys.Block, bool, string, error) {
	switch {
	case text != "" && sealedHex != "":
		return keys.Block{}, false, "tmk_sealed", errors.New("expected either tmk or tmk_sealed, found both")
	case sealedHex != "":
		sealed, err := hex.DecodeString(sealedHex)
		if err != nil || len(sealed) < 20 {
			return keys.Block{}, false, "tmk_sealed", errors.New("expected the hex of a key sealed by `shoudan terminals export`")
		}
		if open == nil {
			return keys.Block{}, false, "", nil
		}
		plain, err := open(sealed)
		if err != nil {
			return keys.Block{}, false, "tmk_sealed", errors.New("expected a key sealed under this deployment's journal key, found one that does not open")
		}
		b, demo, err := parseTMK(string(plain))
		if err != nil {
			return keys.Block{}, false, "tmk_sealed", fmt.Errorf("the sealed key: %v", err)
		}
		return b, demo, "", nil
	}
	b, demo, err := parseTMK(text)
	return b, demo, "tmk", err
}

func (l *LoadSpec) build(open KeyOpener) (*loadInfo, error) {
	if l.Count < 0 || l.Count > 9999999 {
		return nil, l.bad("count", fmt.Sprintf("expected 0..9999999, found %d", l.Count))
	}
	if l.Count == 0 {
		return nil, nil
	}
	tmk, demo, field, err := terminalKey(l.TMK, l.TMKSealed, open)
	if err != nil {
		return nil, l.bad(field, err.Error())
	}
	env := Environment(l.Env)
	if env == "" {
		env = Production
	}
	if env != Production && env != Test {
		return nil, l.bad("env", fmt.Sprintf("expected production or test, found %q", l.Env))
	}
	return &loadInfo{Count: l.Count, MID: l.MID, Env: env, TMK: tmk, Demo: demo, QPS: l.QPS}, nil
}

// generated keeps the last load_terminals generated: every snapshot rebuild with the same entry
// shares them (they are never modified) instead of making count terminals again.
var generated struct {
	sync.Mutex
	info loadInfo
	ts   []Terminal
}

func generate(l *loadInfo) []Terminal {
	generated.Lock()
	defer generated.Unlock()
	g := &generated.info
	if g.Count == l.Count && g.MID == l.MID && g.Env == l.Env && g.QPS == l.QPS && g.Demo == l.Demo && tmkText(g.TMK, g.Demo) == tmkText(l.TMK, l.Demo) {
		return generated.ts
	}
	out := make([]Terminal, l.Count)
	for i := range out {
		out[i] = Terminal{TID: LoadTID(i), MID: l.MID, Env: l.Env, Serial: "LOAD-" + LoadTID(i)[1:], TMK: l.TMK, DemoTMK: l.Demo, QPS: l.QPS, Enabled: true, Generated: true}
	}
	generated.info, generated.ts = *l, out
	return out
}
