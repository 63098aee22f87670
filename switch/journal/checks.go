package journal

import (
	"math/bits"
	"strings"
)

// CheckNames are the acquirer checks a transaction can pass, in bit order: txn.checks is a
// bitmask over this list (8 bytes a row instead of the names). Append only: a bit never
// changes meaning, or old rows would explain themselves wrongly. The same list is in the
// table txn_check_names for SQL readers. Every step of the switch's pipeline must be here
// (a test checks it).
var CheckNames = []string{"frame", "terminal", "signed-on", "mac", "device", "merchant-trading", "merchant-english-name",
	"mcc-matches", "cash-mcc", "qps-enabled", "qps-whitelist", "qps-limit", "void-original", "refund-original",
	"refund-allowed", "refund-window", "refund-amount"}

var checkBit = func() map[string]uint {
	m := map[string]uint{}
	for i, n := range CheckNames {
		m[n] = uint(i)
	}
	return m
}()

// TraceChecks turns a comma-separated list of passed checks into the stored bitmask. A name not
// in CheckNames is not stored.
func TraceChecks(trace string) int64 {
	var m uint64
	for trace != "" {
		var name string
		name, trace, _ = strings.Cut(trace, ",")
		if b, ok := checkBit[name]; ok {
			m |= 1 << b
		}
	}
	return int64(m)
}

// ChecksTrace is the comma-separated list of the checks in a stored bitmask, in bit order (the
// order the pipeline runs them).
func ChecksTrace(mask int64) string {
	m := uint64(mask)
	var names []string
	for m != 0 {
		b := bits.TrailingZeros64(m)
		m &^= 1 << b
		if b < len(CheckNames) {
			names = append(names, CheckNames[b])
		}
	}
	return strings.Join(names, ",")
}
