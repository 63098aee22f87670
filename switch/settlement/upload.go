package settlement

import (
	"bytes"
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shoudan/shoudan/spec"
	"github.com/shoudan/shoudan/spec/pos"
)

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
func CheckUpload(ctx context.Context, db *pgxpool.Pool, panHash func(string) []byte, mid, tid, batch string, items []pos.UploadItem) ([]Mismatch, error) {
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
