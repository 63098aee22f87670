package terminals

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/shoudan/shoudan/spec/money"
	"gopkg.in/yaml.v3"
)

// ConfigError names what is wrong in a registry and why: the line and key when it was read
// from a file, and always the entry (Entity, e.g. "merchant 898310058120001") and its field.
type ConfigError struct {
	Line   int    // 0 when the entry did not come from a file
	Key    string // e.g. merchants[3].mcc
	Reason string // what was expected and what was found
	Field  string // the entry's key, e.g. mcc
	Entity string // e.g. merchant 898310058120001, terminal 10000001 of merchant …, rules
}

func (e *ConfigError) Error() string {
	if e.Line > 0 || e.Entity == "" {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Reason)
	}
	return fmt.Sprintf("%s: %s: %s", e.Entity, e.Field, e.Reason)
}

// Sections are the top-level config keys this package reads.
var Sections = []string{"rules", "qps_whitelist", "merchants", "terminals", "load_terminals"}

// Parse builds a registry from the rules, qps_whitelist, merchants and terminals sections of a
// config document (a YAML mapping node). Every error names its line.
func Parse(root *yaml.Node) (*Registry, error) {
	s, err := ParseSpec(root)
	if err != nil {
		return nil, err
	}
	return s.Build(nil)
}

// ParseSpec reads the registry sections of a config document as written, remembering where
// each entry was so that Build names its line. It checks the shape (known keys, types); Build
// checks the values.
func ParseSpec(root *yaml.Node) (*Spec, error) {
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{Line: root.Line, Key: "config", Reason: "expected a mapping of sections"}
	}
	s := &Spec{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i], root.Content[i+1]
		var err error
		switch key.Value {
		case "rules":
			s.rulesNode = val
			err = decodeStrict(val, "rules", &s.Rules)
		case "qps_whitelist":
			err = parseWhitelist(val, s)
		case "merchants":
			err = parseList(val, "merchants", &s.Merchants, func(m *MerchantSpec, src *entrySource) { m.src = src })
		case "terminals":
			err = parseList(val, "terminals", &s.Terminals, func(t *TerminalSpec, src *entrySource) { t.src = src })
		case "load_terminals":
			s.Load = &LoadSpec{src: &entrySource{val, "load_terminals"}}
			err = decodeStrict(val, "load_terminals", s.Load)
		}
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

func parseWhitelist(n *yaml.Node, s *Spec) error {
	if n.Kind != yaml.MappingNode {
		return &ConfigError{Line: n.Line, Key: "qps_whitelist", Reason: "expected a mapping of MID: registration date (YYYY-MM-DD)"}
	}
	s.whitelistNode = n
	for i := 0; i+1 < len(n.Content); i += 2 {
		s.Whitelist = append(s.Whitelist, WhitelistSpec{MID: n.Content[i].Value, Date: n.Content[i+1].Value})
	}
	return nil
}

func parseList[T any](n *yaml.Node, section string, out *[]T, at func(*T, *entrySource)) error {
	if n.Kind != yaml.SequenceNode {
		return &ConfigError{Line: n.Line, Key: section, Reason: "expected a list"}
	}
	for i, item := range n.Content {
		key := fmt.Sprintf("%s[%d]", section, i)
		var v T
		if err := decodeStrict(item, key, &v); err != nil {
			return err
		}
		at(&v, &entrySource{item, key})
		*out = append(*out, v)
	}
	return nil
}

// decodeStrict decodes a mapping node into out, rejecting keys out does not know.
func decodeStrict(n *yaml.Node, where string, out any) error {
	if n.Kind != yaml.MappingNode {
		return &ConfigError{Line: n.Line, Key: where, Reason: "expected a mapping"}
	}
	known := map[string]bool{}
	t := reflect.TypeOf(out).Elem()
	for i := 0; i < t.NumField(); i++ {
		known[strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]] = true
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !known[k.Value] {
			return &ConfigError{Line: k.Line, Key: where + "." + k.Value, Reason: "unknown key"}
		}
	}
	if err := n.Decode(out); err != nil {
		return &ConfigError{Line: n.Line, Key: where, Reason: strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n  ")}
	}
	return nil
}

func keyLine(n *yaml.Node, key string) int {
	if n == nil {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func deref(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func digits(s string, n int) bool {
	if len(s) != n || n == 0 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}

// ParseAmount reads a CNY amount "1000.00" (or "1000") into fen, exactly (spec/money).
func ParseAmount(s string) (int64, error) { return money.Parse(s) }

// FormatAmount writes fen as CNY.
func FormatAmount(fen int64) string { return money.Format(fen) }

// LoadTID is the TID of generated load terminal i (0-based): 9 and i+1 in 7 digits.
func LoadTID(i int) string {
	b := [8]byte{'9', '0', '0', '0', '0', '0', '0', '0'}
	for j, n := 7, i+1; j > 0 && n > 0; j, n = j-1, n/10 {
		b[j] = byte('0' + n%10)
	}
	return string(b[:])
}

// loadIndex is the i of LoadTID(i).
func loadIndex(tid string) (int, bool) {
	if len(tid) != 8 || tid[0] != '9' {
		return 0, false
	}
	n, err := strconv.Atoi(tid[1:])
	if err != nil || n < 1 {
		return 0, false
	}
	return n - 1, true
}
