// Package money parses and formats CNY amounts exactly: yuan with at most two decimals, held as
// an integer count of fen (F4 carries fen, 12 digits). Never a float: "12.345" is refused, not
// rounded, and "1e2" is not a hundred.
package money

import (
	"fmt"
	"strings"
)

// Max is the largest amount F4 can carry: 9,999,999,999.99 yuan.
const Max = 999999999999

// Parse reads yuan ("12.34", "12.3", "12", "0.05") into fen (up to 15 digits of yuan: a
// balance or a limit; Positive bounds a transaction amount by F4). It accepts digits with an optional
// point and one or two decimals, nothing else: no sign, exponent, grouping commas or currency
// symbol. Zero is allowed (a limit of 0.00); use Positive for a transaction amount.
func Parse(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	bad := func(why string) (int64, error) {
		return 0, fmt.Errorf("expected yuan with at most 2 decimals, like 12.34, found %q: %s", in, why)
	}
	if s == "" {
		return bad("empty")
	}
	if s[0] == '-' {
		return bad("negative amounts are not allowed")
	}
	if s[0] == '+' {
		return bad("no sign allowed")
	}
	yuan, fen, point := strings.Cut(s, ".")
	if point && len(fen) > 2 {
		return bad(fmt.Sprintf("%d decimals (the fen is the smallest unit; nothing is rounded)", len(fen)))
	}
	if point && fen == "" {
		return bad("no digits after the point")
	}
	if yuan == "" {
		return bad("no digits before the point")
	}
	for _, part := range []string{yuan, fen} {
		for _, c := range part {
			if c < '0' || c > '9' {
				switch {
				case c == 'e' || c == 'E':
					return bad("exponents are not amounts")
				case c == ',':
					return bad("no grouping commas")
				default:
					return bad(fmt.Sprintf("%q is not a digit", c))
				}
			}
		}
	}
	if len(strings.TrimLeft(yuan, "0")) > 15 {
		return bad("more than 15 digits of yuan")
	}
	var v int64
	for _, c := range yuan + (fen + "00")[:2] {
		v = v*10 + int64(c-'0')
	}
	return v, nil
}

// Positive is Parse for a transaction amount: zero is refused, and so is more than F4 carries.
func Positive(s string) (int64, error) {
	v, err := Parse(s)
	if err != nil {
		return 0, err
	}
	if v == 0 {
		return 0, fmt.Errorf("expected an amount above zero, like 12.34, found %q", s)
	}
	if v > Max {
		return 0, fmt.Errorf("expected at most 9999999999.99 (F4 carries 12 digits of fen), found %q", s)
	}
	return v, nil
}

// Format writes fen as yuan with two decimals; a negative amount gets a leading minus.
func Format(fen int64) string {
	sign := ""
	if fen < 0 {
		sign, fen = "-", -fen
	}
	return fmt.Sprintf("%s%d.%02d", sign, fen/100, fen%100)
}
