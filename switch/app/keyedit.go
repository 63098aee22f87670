package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// ZMKKey is the tid SetKey takes for issuer.zone_master_key.
const ZMKKey = "issuer.zone_master_key"

// SetKey writes a key block into a config file in place: the tmk of terminal tid, or
// issuer.zone_key when tid is "" (issuer.zone_master_key when it is ZMKKey). The rest of the file is kept byte for byte; the result must
// load, or the file is left untouched. The file is replaced atomically, so a watching switch
// applies the new key live.
func SetKey(path, tid, block string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil || len(doc.Content) == 0 {
		return fmt.Errorf("%s: not a YAML config", path)
	}
	root := doc.Content[0]
	lines := strings.SplitAfter(string(src), "\n")
	val, parent := findKey(root, tid)
	switch {
	case val != nil:
		l := lines[val.Line-1]
		start := val.Column - 1
		end := start
		for end < len(l) && !strings.ContainsRune(",} \t\r\n#", rune(l[end])) {
			end++
		}
		if val.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			end = start + 1 + strings.IndexByte(l[start+1:], l[start]) + 1
		}
		lines[val.Line-1] = l[:start] + block + l[end:]
	case parent != nil && parent.Style&yaml.FlowStyle != 0:
		l := lines[parent.Line-1]
		i := strings.LastIndexByte(l, '}')
		if i < 0 {
			return fmt.Errorf("%s line %d: cannot add tmk to this terminal entry: add `tmk: demo` to it and run again", path, parent.Line)
		}
		lines[parent.Line-1] = l[:i] + ", tmk: " + block + l[i:]
	case parent != nil && len(parent.Content) > 0:
		k := parent.Content[0]
		indent := strings.Repeat(" ", k.Column-1)
		lines = append(lines[:k.Line], append([]string{indent + "tmk: " + block + "\n"}, lines[k.Line:]...)...)
	default:
		if tid == "" {
			return fmt.Errorf("%s: no issuer.zone_key to replace: add `zone_key: demo` under issuer and run again", path)
		}
		if tid == ZMKKey {
			return fmt.Errorf("%s: no issuer.zone_master_key to replace: add `zone_master_key: demo` under issuer and run again", path)
		}
		return fmt.Errorf("%s: no terminal %s in the terminals section", path, tid)
	}
	out := []byte(strings.Join(lines, ""))
	if _, _, err := Parse(out); err != nil {
		return fmt.Errorf("%s: the edited config does not load (%v): left unchanged", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".shoudan-keys-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(out); err == nil {
		err = tmp.Chmod(st.Mode().Perm())
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// findKey returns the value node of terminal tid's tmk (or issuer.zone_key when tid is ""), or
// when absent the terminal's mapping.
func findKey(root *yaml.Node, tid string) (val, parent *yaml.Node) {
	get := func(m *yaml.Node, key string) *yaml.Node {
		for i := 0; m != nil && m.Kind == yaml.MappingNode && i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	if tid == "" {
		return get(get(root, "issuer"), "zone_key"), nil
	}
	if tid == ZMKKey {
		return get(get(root, "issuer"), "zone_master_key"), nil
	}
	ts := get(root, "terminals")
	if ts == nil || ts.Kind != yaml.SequenceNode {
		return nil, nil
	}
	for _, item := range ts.Content {
		if t := get(item, "tid"); t != nil && t.Value == tid {
			return get(item, "tmk"), item
		}
	}
	return nil, nil
}
