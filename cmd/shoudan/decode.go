package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/shoudan/shoudan/spec/pos"
	"github.com/spf13/cobra"
)

func decodeCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "decode [HEX ...]",
		Short: "Decode terminal frames (hex with the 2-byte length) from arguments or stdin, masked",
		RunE: func(cmd *cobra.Command, args []string) error {
			frames := args
			if len(frames) == 0 {
				sc := bufio.NewScanner(cmd.InOrStdin())
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for sc.Scan() {
					if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
						frames = append(frames, l)
					}
				}
			}
			failed := 0
			for i, h := range frames {
				if err := decodeOne(cmd.OutOrStdout(), h, asJSON); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "frame %d: %v\n", i+1, err)
					failed++
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d frames did not decode", failed, len(frames))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per frame")
	return c
}

func decodeOne(w io.Writer, h string, asJSON bool) error {
	b, err := hex.DecodeString(strings.Join(strings.Fields(h), ""))
	if err != nil {
		return fmt.Errorf("not hex: %v", err)
	}
	raw, err := pos.ReadFrame(strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	if len(raw) != len(b)-2 {
		return fmt.Errorf("length prefix says %d bytes, %d follow", len(raw), len(b)-2)
	}
	f, err := pos.Decode(raw)
	if err != nil {
		return err
	}
	rows := pos.Describe(f)
	if asJSON {
		return json.NewEncoder(w).Encode(pos.ToJSON(rows))
	}
	if err := pos.WriteTable(w, rows); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w)
	return err
}
