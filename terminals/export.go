package terminals

import (
	"bytes"

	"gopkg.in/yaml.v3"
)

// Nodes writes the spec as the config file's registry sections (rules, qps_whitelist,
// merchants, terminals, load_terminals), one flow-style line per merchant and terminal as in the
// demo config. Key/value node pairs, in that order.
func (s *Spec) Nodes() ([]*yaml.Node, error) {
	var out []*yaml.Node
	add := func(key string, v any, flow bool) error {
		n := &yaml.Node{}
		if err := n.Encode(v); err != nil {
			return err
		}
		if flow {
			for _, item := range n.Content {
				item.Style = yaml.FlowStyle
			}
		}
		out = append(out, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, n)
		return nil
	}
	if err := add("rules", s.Rules, false); err != nil {
		return nil, err
	}
	wl := &yaml.Node{Kind: yaml.MappingNode}
	for _, w := range s.Whitelist {
		wl.Content = append(wl.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: w.MID, Style: yaml.DoubleQuotedStyle},
			&yaml.Node{Kind: yaml.ScalarNode, Value: w.Date})
	}
	out = append(out, &yaml.Node{Kind: yaml.ScalarNode, Value: "qps_whitelist"}, wl)
	if err := add("merchants", s.Merchants, true); err != nil {
		return nil, err
	}
	if err := add("terminals", s.Terminals, true); err != nil {
		return nil, err
	}
	if s.Load != nil {
		if err := add("load_terminals", s.Load, false); err != nil {
			return nil, err
		}
		out[len(out)-1].Style = yaml.FlowStyle
	}
	return out, nil
}

// ReplaceSections writes the spec into a config document: the registry sections are replaced
// (or added at the end), every other section and comment stays as it was. With src empty the
// result holds the registry sections alone.
func (s *Spec) ReplaceSections(src []byte) ([]byte, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(src)) > 0 {
		if err := yaml.Unmarshal(src, &doc); err != nil {
			return nil, err
		}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	nodes, err := s.Nodes()
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(nodes); i += 2 {
		replaced := false
		for j := 0; j+1 < len(root.Content); j += 2 {
			if root.Content[j].Value == nodes[i].Value {
				nodes[i].HeadComment = root.Content[j].HeadComment
				root.Content[j], root.Content[j+1] = nodes[i], nodes[i+1]
				replaced = true
				break
			}
		}
		if !replaced {
			root.Content = append(root.Content, nodes[i], nodes[i+1])
		}
	}
	// a load_terminals the spec does not have is removed
	if s.Load == nil {
		for j := 0; j+1 < len(root.Content); j += 2 {
			if root.Content[j].Value == "load_terminals" {
				root.Content = append(root.Content[:j], root.Content[j+2:]...)
				break
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
