package settlement

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/spec"
)

// UploadItem is one transaction of a 0320 batch upload (F48 with 60.3 201, protocol.md §4).
type UploadItem struct {
	CardClass string // 00 domestic, 01 foreign
	STAN      string
	PAN       string
	Amount    int64
}

// ParseUpload48 reads F48 of a 0320 detail upload: n2 count (1..8), then count × (card class
// n2, STAN n6, PAN n20 right-aligned zero-filled, amount n12).
func ParseUpload48(s string) ([]UploadItem, error) {
	if len(s) < 2 {
		return nil, fmt.Errorf("field 48 (batch upload): expected n2 count, found %q", s)
	}
	n, err := strconv.Atoi(s[:2])
	if err != nil || n < 1 || n > 8 {
		return nil, fmt.Errorf("field 48 (batch upload): expected a count 01..08, found %q", s[:2])
	}
	if len(s) != 2+40*n {
		return nil, fmt.Errorf("field 48 (batch upload): expected %d digits for %d transactions, found %d", 2+40*n, n, len(s))
	}
	out := make([]UploadItem, n)
	for i := range out {
		r := s[2+40*i : 2+40*(i+1)]
		amt, err := strconv.ParseInt(r[28:40], 10, 64)
		if err != nil || strings.TrimLeft(r, "0123456789") != "" {
			return nil, fmt.Errorf("field 48 (batch upload): transaction %d: expected 40 digits, found %q", i+1, r)
		}
		out[i] = UploadItem{CardClass: r[:2], STAN: r[2:8], PAN: strings.TrimLeft(r[8:28], "0"), Amount: amt}
	}
	return out, nil
}

// Mismatch is a batch-upload item that does not match the journal.
type Mismatch struct {
	STAN, Kind string // missing, amount, card
	Uploaded   int64
	Journal    *int64
	PAN        string // masked
}

// CheckUpload matches each uploaded item against the journal by MID + TID + batch + STAN (the
// PAN by its keyed hash, and the amount) and records the mismatches in batch_mismatch for 差错
// handling (a repeated upload records nothing twice).
func CheckUpload(ctx context.Context, db *pgxpool.Pool, panHash func(string) []byte, mid, tid, batch string, items []UploadItem) ([]Mismatch, error) {
	var out []Mismatch
	for _, it := range items {
		j, err := batchTxn(ctx, db, mid, tid, batch, it.STAN)
		if err != nil {
			return nil, err
		}
		m := Mismatch{STAN: it.STAN, Uploaded: it.Amount, PAN: spec.MaskPAN(it.PAN)}
		switch {
		case j == nil:
			m.Kind = "missing"
		case j.Amount != it.Amount:
			m.Kind, m.Journal = "amount", &j.Amount
		case j.PANHash != nil && !bytes.Equal(j.PANHash, panHash(it.PAN)):
			m.Kind, m.Journal = "card", &j.Amount
		default:
			continue
		}
		out = append(out, m)
		if _, err := db.Exec(ctx, `INSERT INTO batch_mismatch (mid, tid, batch, stan, kind, uploaded_amount, journal_amount, pan_masked)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING`, mid, tid, batch, it.STAN, m.Kind, it.Amount, m.Journal, m.PAN); err != nil {
			return nil, err
		}
	}
	return out, nil
}
