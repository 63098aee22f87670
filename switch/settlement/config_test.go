package settlement_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shoudan/shoudan/switch/settlement"
	"gopkg.in/yaml.v3"
)

func TestRatesAndFees(t *testing.T) {
	for in, want := range map[string]settlement.Rate{"0.38%": 3800, "0.6%": 6000, "1.25%": 12500, "0.0001%": 1, "38bp": 3800, "12.5bp": 1250, "0%": 0} {
		got, err := settlement.ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0.38", "0.00001%", "-1%", "11%", "abc%", "1.234bp", ""} {
		if _, err := settlement.ParseRate(bad); err == nil {
			t.Errorf("ParseRate(%q) accepted", bad)
		}
	}
	// half up to the fen, per transaction; cap after rounding
	for _, c := range []struct {
		amount int64
		rate   settlement.Rate
		cap    int64
		want   int64
	}{{10000, 3800, 0, 38}, {131, 3800, 0, 0}, {132, 3800, 0, 1}, {40, 12500, 0, 1}, {39, 12500, 0, 0}, {10_000_000, 3800, 2000, 2000}, {0, 6000, 0, 0}} {
		if got := settlement.Fee(c.amount, c.rate, c.cap); got != c.want {
			t.Errorf("Fee(%d, %s, cap %d) = %d, want %d", c.amount, c.rate, c.cap, got, c.want)
		}
	}
}

func TestCalendarAndCutoff(t *testing.T) {
	cal := settlement.NewCalendar([]string{"2026-10-01", "2026-10-02"}, []string{"2026-10-04"})
	for d, cy := range map[string]string{"2026-09-30|T+1": "2026-10-04", "2026-10-04|T+1": "2026-10-05", "2026-10-02|D+0": "2026-10-02",
		"2026-10-03|T+0": "2026-10-04", "2026-10-02|D+3": "2026-10-05", "2026-09-29|T+2": "2026-10-04"} {
		parts := strings.Split(d, "|")
		c, err := settlement.ParseCycle(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		if got := cal.PayoutDate(date(parts[0]), c).Format("2006-01-02"); got != cy {
			t.Errorf("%s %s: pay-out %s, want %s", parts[0], parts[1], got, cy)
		}
	}
	loc, _ := time.LoadLocation("Asia/Shanghai")
	co := settlement.Cutoff{Loc: loc, Minutes: 23 * 60}
	for at, want := range map[time.Time]string{
		time.Date(2026, 10, 5, 22, 59, 59, 0, loc):    "2026-10-05",
		time.Date(2026, 10, 5, 23, 0, 0, 0, loc):      "2026-10-06",
		time.Date(2026, 10, 5, 15, 0, 0, 0, time.UTC): "2026-10-06", // 23:00 in Shanghai
		time.Date(2026, 12, 31, 23, 30, 0, 0, loc):    "2027-01-01",
	} {
		if got := co.Date(at).Format("2006-01-02"); got != want {
			t.Errorf("settlement date of %s = %s, want %s", at, got, want)
		}
	}
}

// TestConfigErrorsNameTheLine: a bad settlement section is refused with its line and key.
func TestConfigErrorsNameTheLine(t *testing.T) {
	base := "listeners: []\nsettlement:\n  cutoff: \"23:00\"\n"
	for _, c := range []struct{ yaml, want string }{
		{"  cutoff2: x\n", "line 4: settlement.cutoff2: unknown key"},
		{"  timezone: Mars/Olympus\n", "line 4: settlement.timezone"},
		{"  cycle: W+1\n", "line 4: settlement.cycle: expected a cycle T+N"},
		{"  fees:\n    groups:\n      - {name: a, mccs: [\"5812\"], rate: \"1.25\"}\n", "line 6: settlement.fees.groups[0].rate"},
		{"  fees:\n    groups:\n      - {name: a, mccs: [\"58x2\"], rate: \"1%\"}\n", "line 6: settlement.fees.groups[0].mccs[0]"},
		{"  fees:\n    default: {rate: \"0.6%\", cap: \"1.234\"}\n", "line 5: settlement.fees.default.cap"},
		{"  calendar:\n    holidays: [2026-10-01, 2026-13-01]\n", "line 5: settlement.calendar.holidays[1]"},
		{"  calendar:\n    holidays: [2026-10-01]\n    workdays: [2026-10-01]\n", "line 6: settlement.calendar.workdays: 2026-10-01 is also listed as a holiday"},
		{"  merchants:\n    \"898310058120001\": {rate: \"0.38%\", cycle: D+x}\n", "line 5: settlement.merchants.898310058120001.cycle"},
		{"  merchants:\n    \"898310058120001\": {monthly_statements_from: 2026-13}\n", "line 5: settlement.merchants.898310058120001.monthly_statements_from"},
		{"  merchants:\n    \"8983\": {rate: \"1%\"}\n", "line 5: settlement.merchants.8983: expected a 15-character MID"},
	} {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(base+c.yaml), &n); err != nil {
			t.Fatal(err)
		}
		_, err := settlement.ParseConfig(&n)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.yaml, err, c.want)
		}
	}
}
