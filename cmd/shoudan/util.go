package main

import (
	"encoding/hex"
	"fmt"
)

func hexKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 8 && len(b) != 16) {
		return nil, fmt.Errorf("expected 16 or 32 hex digits")
	}
	return b, nil
}
