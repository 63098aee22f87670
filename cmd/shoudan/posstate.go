package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/keys"
	"github.com/shoudan/shoudan/spec/pos"
	"github.com/shoudan/shoudan/terminals/device"
)

// savedState is the terminal's memory between runs of `shoudan pos`, as a real terminal keeps
// it in flash: batch, STAN, its working keys under its TMK (the field-62 key block, never in
// clear), the last reversible request (PAN masked; the PAN and expiry a reversal must carry are
// sealed under a key derived from the TMK; PIN block, track and ICC data are never kept) and the
// batch's transactions, from which it sends its own settlement totals.
type savedState struct {
	Batch        string `json:"batch"`
	STAN         int    `json:"stan"`
	KeyLayout    string `json:"key_layout,omitempty"`
	KeysUnderTMK string `json:"keys_under_tmk,omitempty"`

	Last       *pos.PurchaseRequest `json:"last,omitempty"`
	LastVoid   *pos.VoidRequest     `json:"last_void,omitempty"`
	LastCard   string               `json:"last_card,omitempty"`        // masked: first 6 + last 4
	LastSealed string               `json:"last_card_sealed,omitempty"` // PAN and expiry, AES-GCM
	LastRRN    string               `json:"last_rrn,omitempty"`
	LastAuth   string               `json:"last_auth,omitempty"`
	LastDate   string               `json:"last_date,omitempty"` // MMDD: the purchase's business day (a refund's 61.3)

	Items []batchItem `json:"batch_items,omitempty"`
}

// batchItem is one approved financial transaction of the current batch.
type batchItem struct {
	Kind     string `json:"kind"` // purchase, void, refund
	STAN     string `json:"stan"`
	Amount   int64  `json:"amount"`
	Of       string `json:"of,omitempty"` // a void: its purchase's STAN
	Standing bool   `json:"standing"`     // not voided or reversed
}

// totals are the batch's settlement totals (docs/protocol.md §4): debit = approved purchases
// still standing; credit = standing voids and refunds.
func (st *savedState) totals() pos.Totals {
	var t pos.Totals
	for _, it := range st.Items {
		if !it.Standing {
			continue
		}
		if it.Kind == "purchase" {
			t.DebitAmount += it.Amount
			t.DebitCount++
		} else {
			t.CreditAmount += it.Amount
			t.CreditCount++
		}
	}
	return t
}

func (st *savedState) item(kind, stan string) *batchItem {
	for i := range st.Items {
		if st.Items[i].Kind == kind && st.Items[i].STAN == stan {
			return &st.Items[i]
		}
	}
	return nil
}

// reversed marks the reversed request (kind, stan) as no longer standing; a reversed void puts
// its purchase back.
func (st *savedState) reversed(kind, stan string) {
	it := st.item(kind, stan)
	if it == nil {
		return
	}
	it.Standing = false
	if kind == "void" {
		if p := st.item("purchase", it.Of); p != nil {
			p.Standing = true
		}
	}
}

// stateKey derives the state file's sealing key from the terminal's TMK.
func stateKey(tmk []byte) []byte {
	m := hmac.New(sha256.New, tmk)
	m.Write([]byte("shoudan pos state"))
	return m.Sum(nil)
}

func seal(tmk []byte, plain string) (string, error) {
	blk, err := aes.NewCipher(stateKey(tmk))
	if err != nil {
		return "", err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return hex.EncodeToString(g.Seal(nonce, nonce, []byte(plain), nil)), nil
}

func unseal(tmk []byte, sealed string) (string, error) {
	b, err := hex.DecodeString(sealed)
	if err != nil {
		return "", err
	}
	blk, err := aes.NewCipher(stateKey(tmk))
	if err != nil {
		return "", err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return "", err
	}
	if len(b) < g.NonceSize() {
		return "", errors.New("sealed value too short")
	}
	p, err := g.Open(nil, b[:g.NonceSize()], b[g.NonceSize():], nil)
	return string(p), err
}

// loadState reads the state file; keys and the last card are restored with the TMK. A file of
// an older layout (keys in clear) is read for its batch and STAN only: the terminal signs on.
func loadState(path string, tmk []byte) (savedState, device.State, error) {
	st := savedState{Batch: "000000"}
	ds := device.State{Batch: "000000"}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, ds, nil
	}
	if err != nil {
		return st, ds, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, ds, fmt.Errorf("%s: %v", path, err)
	}
	ds.Batch, ds.STAN = st.Batch, st.STAN
	if st.KeysUnderTMK != "" {
		if blk, err := hex.DecodeString(st.KeysUnderTMK); err == nil {
			if wk, err := keys.ParseKeyBlock(tmk, st.KeyLayout, blk); err == nil {
				ds.Keys = wk
			}
		}
	}
	if st.LastSealed != "" {
		if card, err := unseal(tmk, st.LastSealed); err == nil {
			pan, exp, _ := strings.Cut(card, "|")
			if st.Last != nil {
				st.Last.PAN, st.Last.Expiry = pan, exp
			}
			if st.LastVoid != nil {
				st.LastVoid.PAN, st.LastVoid.Expiry = pan, exp
			}
		}
	}
	return st, ds, nil
}

// saveState writes the state with keys under the TMK and the card masked and sealed.
func saveState(path string, st savedState, ds device.State, nmi string, tmk []byte) error {
	st.Batch, st.STAN, st.KeysUnderTMK, st.KeyLayout = ds.Batch, ds.STAN, "", ""
	if len(ds.Keys.TAK) > 0 {
		blk, err := keys.KeyBlock(tmk, nmi, ds.Keys)
		if err != nil {
			return err
		}
		st.KeysUnderTMK, st.KeyLayout = hex.EncodeToString(blk), nmi
	}
	var pan, exp string
	if st.Last != nil {
		c := *st.Last
		pan, exp = c.PAN, c.Expiry
		c.PAN, c.Expiry = "", ""
		st.Last = &c
	}
	if st.LastVoid != nil {
		v := *st.LastVoid
		if v.PAN != "" {
			pan, exp = v.PAN, v.Expiry
		}
		v.PAN, v.Expiry = "", ""
		st.LastVoid = &v
	}
	if pan != "" {
		sealed, err := seal(tmk, pan+"|"+exp)
		if err != nil {
			return err
		}
		st.LastCard, st.LastSealed = spec.MaskPAN(pan), sealed
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
