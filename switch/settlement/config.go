// Package settlement closes settlement days and settles merchants: the cut-off that decides a
// transaction's settlement date (F15), per-merchant netting of purchases, voids, refunds and
// reversals, merchant discount fees, pay-out dates by cycle over a business calendar, merchant
// balances (pay-outs, frozen funds, refunds waiting for clearing), statements (.xlsx / CSV) and
// reconciliation against the issuer's clearing file. The CLI (`shoudan settle …`,
// `shoudan statements`), the automatic close in `shoudan serve` and the console all call this
// package; none of them carries settlement logic of its own.
//
// Money is integer fen throughout. Rates are exact: parts per million of the amount, written in
// the config as a percentage with up to four decimals ("0.38%") or in basis points ("38bp").
package settlement

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/shoudan/shoudan/terminals"
	"gopkg.in/yaml.v3"
)

// Config is the settlement section of the config file.
type Config struct {
	Cutoff Cutoff
	// CloseDelay is how long after the cut-off the automatic close waits, so transactions in
	// flight at the cut-off have their answers journaled first.
	CloseDelay time.Duration
	AutoClose  bool
	Cycle      Cycle // the default pay-out cycle
	Fees       Fees
	Calendar   Calendar
	Merchants  map[string]MerchantTerms // per-merchant overrides by MID
	// StatementsDir is where the automatic close writes statements ("" = <data_dir>/statements).
	StatementsDir string
	// ClearingDir is where the issuer's clearing files are read from ("" = <data_dir>/clearing).
	ClearingDir string
}

// MerchantTerms override the defaults for one merchant.
type MerchantTerms struct {
	Rate    *Rate
	Cap     *int64 // fen per transaction; 0 = no cap
	Cycle   *Cycle
	Monthly time.Time // monthly statements from this month on (zero: not enabled)
}

// Rate is a merchant discount rate in parts per million of the amount (0.38% = 3800).
type Rate int64

// ParseRate reads "0.38%" (up to four decimals) or "38bp" (up to two decimals).
func ParseRate(s string) (Rate, error) {
	s = strings.TrimSpace(s)
	var num string
	var scale int // decimals the unit already carries to reach ppm
	switch {
	case strings.HasSuffix(s, "%"):
		num, scale = strings.TrimSpace(strings.TrimSuffix(s, "%")), 4 // 1% = 10^4 ppm
	case strings.HasSuffix(s, "bp"):
		num, scale = strings.TrimSpace(strings.TrimSuffix(s, "bp")), 2 // 1bp = 10^2 ppm
	default:
		return 0, fmt.Errorf("expected a rate such as \"0.38%%\" or \"38bp\", found %q", s)
	}
	whole, frac, _ := strings.Cut(num, ".")
	if len(frac) > scale || whole == "" || strings.ContainsAny(whole+frac, "+-") {
		return 0, fmt.Errorf("expected a rate such as \"0.38%%\" (up to 4 decimals) or \"38bp\" (up to 2), found %q", s)
	}
	w, err1 := strconv.ParseUint(whole, 10, 32)
	f := uint64(0)
	var err2 error
	if frac != "" {
		f, err2 = strconv.ParseUint(frac, 10, 32)
		for range scale - len(frac) {
			f *= 10
		}
	}
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("expected a rate such as \"0.38%%\" or \"38bp\", found %q", s)
	}
	pow := uint64(1)
	for range scale {
		pow *= 10
	}
	r := Rate(w*pow + f)
	if r > 100_000 { // 10%
		return 0, fmt.Errorf("expected a rate of at most 10%%, found %q", s)
	}
	return r, nil
}

func (r Rate) String() string {
	s := fmt.Sprintf("%d.%04d", r/10000, r%10000)
	s = strings.TrimRight(s, "0")
	s = strings.TrimSuffix(s, ".")
	return s + "%"
}

// Fee is the discount fee of one transaction of amount fen (amount ≥ 0): amount × rate rounded
// half up to the fen, then limited to cap when cap > 0. Fees are rounded per transaction and
// then summed; a void or reversal returns exactly the fee its original was charged.
func Fee(amount int64, r Rate, cap int64) int64 {
	if amount <= 0 {
		return 0
	}
	f := (amount*int64(r) + 500_000) / 1_000_000
	if cap > 0 && f > cap {
		f = cap
	}
	return f
}

// FeeGroup is a merchant discount rate for a group of MCCs.
type FeeGroup struct {
	Name string
	MCCs []mccRange
	Rate Rate
	Cap  int64
}

type mccRange struct{ lo, hi string }

// Fees are the merchant discount rates: MCC groups (first match wins) and a default.
type Fees struct {
	Default FeeGroup
	Groups  []FeeGroup
}

// Terms are what applies to one merchant: its fee group, rate, cap and cycle.
type Terms struct {
	Group string `json:"group"`
	Rate  Rate   `json:"rate"`
	Cap   int64  `json:"cap"`
	Cycle Cycle  `json:"cycle"`
}

// TermsFor resolves a merchant's terms: its override, else the MCC group, else the default.
func (c *Config) TermsFor(mid, mcc string) Terms {
	g := c.Fees.Default
	for _, fg := range c.Fees.Groups {
		if fg.matches(mcc) {
			g = fg
			break
		}
	}
	t := Terms{Group: g.Name, Rate: g.Rate, Cap: g.Cap, Cycle: c.Cycle}
	if o, ok := c.Merchants[mid]; ok {
		if o.Rate != nil {
			t.Rate, t.Group = *o.Rate, "merchant"
		}
		if o.Cap != nil {
			t.Cap = *o.Cap
		}
		if o.Cycle != nil {
			t.Cycle = *o.Cycle
		}
	}
	return t
}

func (g FeeGroup) matches(mcc string) bool {
	for _, r := range g.MCCs {
		if mcc >= r.lo && mcc <= r.hi {
			return true
		}
	}
	return false
}

// Cycle is a pay-out cycle: T+N counts business days of the calendar (T+1: the next business
// day), D+N counts calendar days (D+0: the settlement date itself); a D+N date that falls on a
// non-business day is paid on it all the same (that is what D+N is bought for).
type Cycle struct {
	Business bool `json:"business"`
	N        int  `json:"n"`
}

func (c Cycle) String() string {
	if c.Business {
		return fmt.Sprintf("T+%d", c.N)
	}
	return fmt.Sprintf("D+%d", c.N)
}

// ParseCycle reads T+N or D+N (N 0..30).
func ParseCycle(s string) (Cycle, error) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if len(s) >= 3 && (s[0] == 'T' || s[0] == 'D') && s[1] == '+' {
		if n, err := strconv.Atoi(s[2:]); err == nil && n >= 0 && n <= 30 {
			return Cycle{Business: s[0] == 'T', N: n}, nil
		}
	}
	return Cycle{}, fmt.Errorf("expected a cycle T+N (business days) or D+N (calendar days), N 0..30, found %q", s)
}

// Cutoff is the daily cut-off: a transaction at or after it belongs to the next settlement date.
type Cutoff struct {
	Loc     *time.Location
	Minutes int // minutes after local midnight, 0..1439
}

// Date is the settlement date of a transaction at t: its local date in the cut-off's zone, or
// the next day from the cut-off on. The date carries that zone's midnight.
func (c Cutoff) Date(t time.Time) time.Time {
	l := t.In(c.Loc)
	d := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, c.Loc)
	if c.Minutes > 0 && l.Hour()*60+l.Minute() >= c.Minutes {
		d = d.AddDate(0, 0, 1)
	}
	return d
}

// At is the instant settlement date d closes: the first instant whose Date is after d (the
// cut-off on d, or the midnight ending d when the cut-off is 00:00).
func (c Cutoff) At(d time.Time) time.Time {
	y, m, dd := d.Date()
	if c.Minutes == 0 {
		return time.Date(y, m, dd+1, 0, 0, 0, 0, c.Loc)
	}
	return time.Date(y, m, dd, 0, c.Minutes, 0, 0, c.Loc)
}

func (c Cutoff) String() string {
	return fmt.Sprintf("%02d:%02d %s", c.Minutes/60, c.Minutes%60, c.Loc)
}

// DefaultConfig is what applies without a settlement section: cut-off 23:00 Asia/Shanghai,
// T+1, automatic close two minutes after the cut-off, 0.60% without cap.
func DefaultConfig() *Config {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		loc = time.FixedZone("CST", 8*3600)
	}
	return &Config{Cutoff: Cutoff{Loc: loc, Minutes: 23 * 60}, CloseDelay: 2 * time.Minute, AutoClose: true,
		Cycle: Cycle{Business: true, N: 1}, Fees: Fees{Default: FeeGroup{Name: "default", Rate: 6000}},
		Calendar: Calendar{holidays: map[string]bool{}, workdays: map[string]bool{}}, Merchants: map[string]MerchantTerms{}}
}

type configYAML struct {
	Cutoff        string    `yaml:"cutoff"`
	Timezone      string    `yaml:"timezone"`
	CloseDelay    string    `yaml:"close_delay"`
	AutoClose     *bool     `yaml:"auto_close"`
	Cycle         string    `yaml:"cycle"`
	Fees          yaml.Node `yaml:"fees"`
	Calendar      yaml.Node `yaml:"calendar"`
	Merchants     yaml.Node `yaml:"merchants"`
	StatementsDir string    `yaml:"statements_dir"`
	ClearingDir   string    `yaml:"clearing_dir"`
}

type groupYAML struct {
	Name string   `yaml:"name"`
	MCCs []string `yaml:"mccs"`
	Rate string   `yaml:"rate"`
	Cap  string   `yaml:"cap"`
}

type merchantYAML struct {
	Rate    string `yaml:"rate"`
	Cap     string `yaml:"cap"`
	Cycle   string `yaml:"cycle"`
	Monthly string `yaml:"monthly_statements_from"`
}

type calendarYAML struct {
	Holidays []string `yaml:"holidays"`
	Workdays []string `yaml:"workdays"`
}

func cfgErr(line int, key, why string) error {
	return &terminals.ConfigError{Line: line, Key: key, Reason: why}
}

// ParseConfig reads the settlement section of a config document (a YAML document or mapping
// node); a document without one gets DefaultConfig. Every error names its line.
func ParseConfig(root *yaml.Node) (*Config, error) {
	c := DefaultConfig()
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	var n *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "settlement" {
			n = root.Content[i+1]
		}
	}
	if n == nil {
		return c, nil
	}
	var y configYAML
	if err := decodeStrict(n, "settlement", &y); err != nil {
		return nil, err
	}
	if y.Timezone != "" {
		loc, err := time.LoadLocation(y.Timezone)
		if err != nil {
			return nil, cfgErr(keyLine(n, "timezone"), "settlement.timezone", fmt.Sprintf("expected an IANA zone such as Asia/Shanghai, found %q", y.Timezone))
		}
		c.Cutoff.Loc = loc
	}
	if y.Cutoff != "" {
		t, err := time.Parse("15:04", y.Cutoff)
		if err != nil {
			return nil, cfgErr(keyLine(n, "cutoff"), "settlement.cutoff", fmt.Sprintf("expected a local time HH:MM, found %q", y.Cutoff))
		}
		c.Cutoff.Minutes = t.Hour()*60 + t.Minute()
	}
	if y.CloseDelay != "" {
		d, err := time.ParseDuration(y.CloseDelay)
		if err != nil || d < 0 || d > 6*time.Hour {
			return nil, cfgErr(keyLine(n, "close_delay"), "settlement.close_delay", fmt.Sprintf("expected a duration 0s..6h, found %q", y.CloseDelay))
		}
		c.CloseDelay = d
	}
	if y.AutoClose != nil {
		c.AutoClose = *y.AutoClose
	}
	if y.Cycle != "" {
		cy, err := ParseCycle(y.Cycle)
		if err != nil {
			return nil, cfgErr(keyLine(n, "cycle"), "settlement.cycle", err.Error())
		}
		c.Cycle = cy
	}
	c.StatementsDir, c.ClearingDir = y.StatementsDir, y.ClearingDir
	if y.Fees.Kind != 0 {
		if err := parseFees(&y.Fees, &c.Fees); err != nil {
			return nil, err
		}
	}
	if y.Calendar.Kind != 0 {
		var cy calendarYAML
		if err := decodeStrict(&y.Calendar, "settlement.calendar", &cy); err != nil {
			return nil, err
		}
		for _, list := range []struct {
			key  string
			in   []string
			into map[string]bool
		}{{"holidays", cy.Holidays, c.Calendar.holidays}, {"workdays", cy.Workdays, c.Calendar.workdays}} {
			for i, s := range list.in {
				d, err := time.Parse("2006-01-02", s)
				if err != nil {
					return nil, cfgErr(seqLine(&y.Calendar, list.key, i), fmt.Sprintf("settlement.calendar.%s[%d]", list.key, i), fmt.Sprintf("expected a date YYYY-MM-DD, found %q", s))
				}
				list.into[d.Format("2006-01-02")] = true
			}
		}
		for d := range c.Calendar.workdays {
			if c.Calendar.holidays[d] {
				return nil, cfgErr(keyLine(&y.Calendar, "workdays"), "settlement.calendar.workdays", fmt.Sprintf("%s is also listed as a holiday", d))
			}
		}
	}
	if y.Merchants.Kind != 0 {
		if y.Merchants.Kind != yaml.MappingNode {
			return nil, cfgErr(y.Merchants.Line, "settlement.merchants", "expected a mapping of MID: terms")
		}
		for i := 0; i+1 < len(y.Merchants.Content); i += 2 {
			k, v := y.Merchants.Content[i], y.Merchants.Content[i+1]
			key := "settlement.merchants." + k.Value
			if len(k.Value) != 15 {
				return nil, cfgErr(k.Line, key, fmt.Sprintf("expected a 15-character MID, found %q", k.Value))
			}
			var my merchantYAML
			if err := decodeStrict(v, key, &my); err != nil {
				return nil, err
			}
			var t MerchantTerms
			if my.Rate != "" {
				r, err := ParseRate(my.Rate)
				if err != nil {
					return nil, cfgErr(keyLine(v, "rate"), key+".rate", err.Error())
				}
				t.Rate = &r
			}
			if my.Cap != "" {
				fen, err := terminals.ParseAmount(my.Cap)
				if err != nil {
					return nil, cfgErr(keyLine(v, "cap"), key+".cap", err.Error())
				}
				t.Cap = &fen
			}
			if my.Cycle != "" {
				cy, err := ParseCycle(my.Cycle)
				if err != nil {
					return nil, cfgErr(keyLine(v, "cycle"), key+".cycle", err.Error())
				}
				t.Cycle = &cy
			}
			if my.Monthly != "" {
				m, err := time.Parse("2006-01", my.Monthly)
				if err != nil {
					return nil, cfgErr(keyLine(v, "monthly_statements_from"), key+".monthly_statements_from", fmt.Sprintf("expected a month YYYY-MM, found %q", my.Monthly))
				}
				t.Monthly = m
			}
			c.Merchants[k.Value] = t
		}
	}
	return c, nil
}

func parseFees(n *yaml.Node, f *Fees) error {
	if n.Kind != yaml.MappingNode {
		return cfgErr(n.Line, "settlement.fees", "expected a mapping with default and groups")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "default":
			g, err := parseGroup(v, "settlement.fees.default", false)
			if err != nil {
				return err
			}
			g.Name = "default"
			f.Default = g
		case "groups":
			if v.Kind != yaml.SequenceNode {
				return cfgErr(v.Line, "settlement.fees.groups", "expected a list of {name, mccs, rate, cap}")
			}
			seen := map[string]bool{}
			for j, item := range v.Content {
				key := fmt.Sprintf("settlement.fees.groups[%d]", j)
				g, err := parseGroup(item, key, true)
				if err != nil {
					return err
				}
				if seen[g.Name] {
					return cfgErr(keyLine(item, "name"), key+".name", fmt.Sprintf("group %q repeats an earlier group", g.Name))
				}
				seen[g.Name] = true
				f.Groups = append(f.Groups, g)
			}
		default:
			return cfgErr(k.Line, "settlement.fees."+k.Value, "unknown key (expected default or groups)")
		}
	}
	return nil
}

func parseGroup(n *yaml.Node, key string, named bool) (FeeGroup, error) {
	var y groupYAML
	if err := decodeStrict(n, key, &y); err != nil {
		return FeeGroup{}, err
	}
	var g FeeGroup
	if named {
		if y.Name == "" {
			return g, cfgErr(n.Line, key+".name", "expected a group name")
		}
		if len(y.MCCs) == 0 {
			return g, cfgErr(keyLine(n, "mccs"), key+".mccs", "expected at least one MCC or range such as \"5811-5814\"")
		}
	} else if len(y.MCCs) > 0 {
		return g, cfgErr(keyLine(n, "mccs"), key+".mccs", "the default group applies to every other MCC: it takes no mccs")
	}
	g.Name = y.Name
	for i, s := range y.MCCs {
		lo, hi, isRange := strings.Cut(s, "-")
		if !isRange {
			hi = lo
		}
		if !digits4(lo) || !digits4(hi) || hi < lo {
			return g, cfgErr(seqLine(n, "mccs", i), fmt.Sprintf("%s.mccs[%d]", key, i), fmt.Sprintf("expected a 4-digit MCC or a range such as \"5811-5814\", found %q", s))
		}
		g.MCCs = append(g.MCCs, mccRange{lo, hi})
	}
	if y.Rate == "" {
		return g, cfgErr(n.Line, key+".rate", "expected a rate such as \"0.38%\"")
	}
	r, err := ParseRate(y.Rate)
	if err != nil {
		return g, cfgErr(keyLine(n, "rate"), key+".rate", err.Error())
	}
	g.Rate = r
	if y.Cap != "" {
		fen, err := terminals.ParseAmount(y.Cap)
		if err != nil {
			return g, cfgErr(keyLine(n, "cap"), key+".cap", err.Error())
		}
		g.Cap = fen
	}
	return g, nil
}

func digits4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// decodeStrict decodes a mapping node into out, rejecting keys out does not know (yaml.Node
// fields are kept raw for their own parsers).
func decodeStrict(n *yaml.Node, where string, out any) error {
	if n.Kind != yaml.MappingNode {
		return cfgErr(n.Line, where, "expected a mapping")
	}
	known := map[string]bool{}
	t := reflect.TypeOf(out).Elem()
	for i := 0; i < t.NumField(); i++ {
		if tag := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]; tag != "-" {
			known[tag] = true
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !known[k.Value] {
			return cfgErr(k.Line, where+"."+k.Value, "unknown key")
		}
	}
	if err := n.Decode(out); err != nil {
		return cfgErr(n.Line, where, strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  "))
	}
	return nil
}

func keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func seqLine(n *yaml.Node, key string, idx int) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && idx < len(n.Content[i+1].Content) {
			return n.Content[i+1].Content[idx].Line
		}
	}
	return keyLine(n, key)
}

// Calendar says which dates are business days: Monday to Friday, minus the configured holidays,
// plus the configured make-up working days (调休: a Saturday or Sunday declared a working day).
type Calendar struct {
	holidays map[string]bool
	workdays map[string]bool
}

// NewCalendar builds a calendar from YYYY-MM-DD lists (tests and tools).
func NewCalendar(holidays, workdays []string) Calendar {
	c := Calendar{holidays: map[string]bool{}, workdays: map[string]bool{}}
	for _, d := range holidays {
		c.holidays[d] = true
	}
	for _, d := range workdays {
		c.workdays[d] = true
	}
	return c
}

// BusinessDay reports whether d is a business day.
func (c Calendar) BusinessDay(d time.Time) bool {
	k := d.Format("2006-01-02")
	if c.workdays[k] {
		return true
	}
	if c.holidays[k] {
		return false
	}
	wd := d.Weekday()
	return wd != time.Saturday && wd != time.Sunday
}

// PayoutDate is when the credit of settlement date d is paid under cycle cy.
func (c Calendar) PayoutDate(d time.Time, cy Cycle) time.Time {
	if !cy.Business {
		return d.AddDate(0, 0, cy.N)
	}
	p := d
	if cy.N == 0 {
		for !c.BusinessDay(p) {
			p = p.AddDate(0, 0, 1)
		}
		return p
	}
	for n := 0; n < cy.N; {
		p = p.AddDate(0, 0, 1)
		if c.BusinessDay(p) {
			n++
		}
	}
	return p
}

// Lists returns the holidays and workdays, sorted (for the settlement snapshot).
func (c Calendar) Lists() (holidays, workdays []string) {
	for d := range c.holidays {
		holidays = append(holidays, d)
	}
	for d := range c.workdays {
		workdays = append(workdays, d)
	}
	sort.Strings(holidays)
	sort.Strings(workdays)
	return
}
