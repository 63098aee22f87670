package refunds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shoudan/shoudan/spec/money"
	"github.com/xuri/excelize/v2"
)

// Batch refunds: an .xlsx template (original RRN, original date, amount, reason), uploaded and
// processed row by row, each row on its own (a bad row does not stop the others), and a result
// file saying per row what happened. A batch is identified by the content of its rows, not the
// file's bytes: the same rows uploaded again (the same file, or a re-saved copy) are the same
// batch and get the first upload's results; nothing is refunded twice. Within one file, a row
// that repeats an earlier row (same RRN, date and amount) is a duplicate and is not refunded.

// BatchHeader is the template's header row.
var BatchHeader = []string{"原交易参考号 Original RRN", "原交易日期 Original date (YYYY-MM-DD)", "退款金额(元) Amount (yuan)", "退款原因 Reason"}

// ResultHeader is the result file's extra columns.
var ResultHeader = []string{"结果 Result", "应答码 Code", "说明 Message", "退款编号 Refund ID", "退款参考号 Refund RRN"}

const batchSheet = "退款 Refunds"

// MaxBatchRows bounds a file.
const MaxBatchRows = 5000

// Template is the downloadable batch template.
func Template() ([]byte, error) {
	f := excelize.NewFile()
	defer f.Close()
	if err := f.SetSheetName("Sheet1", batchSheet); err != nil {
		return nil, err
	}
	for i, h := range BatchHeader {
		cell, _ := excelize.CoordinatesToCellName(i+1, 1)
		_ = f.SetCellStr(batchSheet, cell, h)
	}
	// an example row, in the formats expected (text cells: an RRN keeps its leading zeros)
	for i, v := range []string{"000000001234", time.Now().AddDate(0, 0, -1).Format("2006-01-02"), "12.34", "示例：顾客退货 example: returned"} {
		cell, _ := excelize.CoordinatesToCellName(i+1, 2)
		_ = f.SetCellStr(batchSheet, cell, v)
	}
	_ = f.SetColWidth(batchSheet, "A", "D", 28)
	text, _ := f.NewStyle(&excelize.Style{NumFmt: 49}) // "@": text
	_ = f.SetColStyle(batchSheet, "A:D", text)
	var b bytes.Buffer
	if _, err := f.WriteTo(&b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// BatchRow is one row of a batch and what became of it.
type BatchRow struct {
	Row      int    `json:"row"` // the sheet's row number
	RRN      string `json:"rrn"`
	Date     string `json:"date"`
	Amount   string `json:"amount"`
	Reason   string `json:"reason"`
	State    string `json:"state"` // succeeded, sent, applied, failed, invalid, duplicate
	Code     string `json:"code"`
	Message  string `json:"message"`
	RefundID int64  `json:"refund_id,omitempty"`
	RefundRR string `json:"refund_rrn,omitempty"`
}

// Batch is an uploaded batch.
type Batch struct {
	ID         int64
	MID        string
	FileName   string
	UploadedBy string
	At         time.Time
	Rows       []BatchRow
	Again      bool // this upload repeated an earlier one: its results, nothing new
}

// ParseBatch reads an uploaded file: the rows under the header, as text.
func ParseBatch(r io.Reader) ([]BatchRow, error) {
	f, err := excelize.OpenReader(r)
	if err != nil {
		return nil, fmt.Errorf("expected an .xlsx file made from the template: %v", err)
	}
	defer f.Close()
	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		return nil, errors.New("the file has no sheet")
	}
	rows, err := f.GetRows(sheets[0])
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 || !strings.Contains(strings.Join(rows[0], " "), "RRN") {
		return nil, errors.New("the first row must be the template's header (Original RRN, Original date, Amount, Reason)")
	}
	var out []BatchRow
	for i, cells := range rows[1:] {
		get := func(j int) string {
			if j < len(cells) {
				return strings.TrimSpace(cells[j])
			}
			return ""
		}
		if get(0)+get(1)+get(2)+get(3) == "" {
			continue
		}
		out = append(out, BatchRow{Row: i + 2, RRN: get(0), Date: get(1), Amount: get(2), Reason: get(3)})
	}
	if len(out) == 0 {
		return nil, errors.New("the file has no rows under the header")
	}
	if len(out) > MaxBatchRows {
		return nil, fmt.Errorf("at most %d rows per file, found %d", MaxBatchRows, len(out))
	}
	return out, nil
}

// contentHash identifies a batch by its rows.
func contentHash(rows []BatchRow) []byte {
	h := sha256.New()
	for _, r := range rows {
		fmt.Fprintf(h, "%s\x1f%s\x1f%s\x1f%s\x1e", r.RRN, r.Date, r.Amount, r.Reason)
	}
	return h.Sum(nil)
}

// ProcessBatch validates and makes each row's refund. The same rows uploaded before return that
// batch's results (Again).
func (s *Service) ProcessBatch(ctx context.Context, mid, fileName string, rows []BatchRow, by Actor, totpCode string) (*Batch, error) {
	hash := contentHash(rows)
	if prev, err := s.batchByHash(ctx, mid, hash); err == nil {
		prev.Again = true
		return prev, nil
	} else if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	set, err := s.Settings(ctx, mid)
	if err != nil {
		return nil, err
	}
	if set.TOTPRequired {
		if err := s.VerifyTOTP(ctx, by.UserID, totpCode); err != nil {
			return nil, err
		}
	}
	b := &Batch{MID: mid, FileName: fileName, UploadedBy: by.Name}
	err = s.pool().QueryRow(ctx, `INSERT INTO refund_batch (mid, content_hash, file_name, uploaded_by, rows) VALUES ($1,$2,$3,$4,$5)
		ON CONFLICT (mid, content_hash) DO NOTHING RETURNING id, at`, mid, hash, fileName, by.Name, len(rows)).Scan(&b.ID, &b.At)
	if errors.Is(err, pgx.ErrNoRows) { // the same rows uploaded at the same moment
		prev, err := s.batchByHash(ctx, mid, hash)
		if err == nil {
			prev.Again = true
		}
		return prev, err
	}
	if err != nil {
		return nil, err
	}
	key := hex.EncodeToString(hash[:16])
	seen := map[string]int{}
	for i := range rows {
		r := &rows[i]
		s.batchRow(ctx, b, key, r, seen, by)
	}
	b.Rows = rows
	res, _ := json.Marshal(rows)
	if _, err := s.pool().Exec(ctx, `UPDATE refund_batch SET result=$2 WHERE id=$1`, b.ID, res); err != nil {
		return nil, err
	}
	_, _ = s.pool().Exec(ctx, `INSERT INTO audit_log (login, user_id, mid, action, detail) VALUES ($1,$2,$3,'refund_batch',$4)`,
		by.Name, nullID(by.UserID), mid, fmt.Sprintf("batch %d %q: %d rows", b.ID, fileName, len(rows)))
	return b, nil
}

func (s *Service) batchRow(ctx context.Context, b *Batch, key string, r *BatchRow, seen map[string]int, by Actor) {
	invalid := func(msg string) { r.State, r.Message = "invalid", msg }
	if len(r.RRN) != 12 || strings.Trim(r.RRN, "0123456789") != "" {
		invalid(fmt.Sprintf("original RRN: expected 12 digits, found %q", r.RRN))
		return
	}
	day, err := time.ParseInLocation("2006-01-02", r.Date, time.Local)
	if err != nil {
		invalid(fmt.Sprintf("original date: expected YYYY-MM-DD, found %q", r.Date))
		return
	}
	amount, err := money.Positive(r.Amount)
	if err != nil {
		invalid("amount: " + err.Error())
		return
	}
	r.Amount = money.Format(amount)
	dup := r.RRN + "/" + r.Date + "/" + r.Amount
	if first, ok := seen[dup]; ok {
		r.State, r.Message = "duplicate", fmt.Sprintf("the same refund as row %d: not refunded again", first)
		return
	}
	seen[dup] = r.Row
	ref, err := s.Request(ctx, Request{MID: b.MID, OrigRRN: r.RRN, OrigDay: day, Amount: amount, Reason: r.Reason,
		IdemKey: fmt.Sprintf("batch:%s:%d", key, r.Row), Source: FromBatch, BatchID: b.ID, By: by, totpDone: true})
	if err != nil {
		invalid(err.Error())
		return
	}
	if ref.ID != 0 && !ref.Final && ref.State != Applied {
		if got, err := s.Wait(ctx, ref.ID, 3*time.Second); err == nil {
			ref = got
		}
	}
	r.State, r.Code, r.Message, r.RefundID, r.RefundRR = ref.State, ref.Code, ref.Why, ref.ID, ref.RRN
}

func (s *Service) batchByHash(ctx context.Context, mid string, hash []byte) (*Batch, error) {
	return s.batchWhere(ctx, "mid=$1 AND content_hash=$2", mid, hash)
}

// BatchByID is an uploaded batch of merchant mid ("" = any).
func (s *Service) BatchByID(ctx context.Context, mid string, id int64) (*Batch, error) {
	return s.batchWhere(ctx, "id=$1 AND ($2 = '' OR mid=$2)", id, mid)
}

func (s *Service) batchWhere(ctx context.Context, where string, args ...any) (*Batch, error) {
	var b Batch
	var res []byte
	err := s.pool().QueryRow(ctx, `SELECT id, mid, file_name, uploaded_by, at, coalesce(result, '[]') FROM refund_batch WHERE `+where, args...).
		Scan(&b.ID, &b.MID, &b.FileName, &b.UploadedBy, &b.At, &res)
	if err != nil {
		return nil, err
	}
	_ = json.Unmarshal(res, &b.Rows)
	return &b, nil
}

// Refresh updates the rows' states from their refunds (an advice answered after the upload).
func (s *Service) Refresh(ctx context.Context, b *Batch) {
	for i := range b.Rows {
		r := &b.Rows[i]
		if r.RefundID == 0 {
			continue
		}
		if ref, err := s.Get(ctx, b.MID, r.RefundID); err == nil {
			r.State, r.Code, r.Message, r.RefundRR = ref.State, ref.Code, ref.Why, ref.RRN
		}
	}
}

// ResultFile is the batch's result: the rows as uploaded and what became of each.
func ResultFile(b *Batch) ([]byte, error) {
	f := excelize.NewFile()
	defer f.Close()
	if err := f.SetSheetName("Sheet1", batchSheet); err != nil {
		return nil, err
	}
	head := append(append([]string{"行 Row"}, BatchHeader...), ResultHeader...)
	for i, h := range head {
		cell, _ := excelize.CoordinatesToCellName(i+1, 1)
		_ = f.SetCellStr(batchSheet, cell, h)
	}
	for n, r := range b.Rows {
		id := ""
		if r.RefundID != 0 {
			id = fmt.Sprint(r.RefundID)
		}
		for i, v := range []string{fmt.Sprint(r.Row), r.RRN, r.Date, r.Amount, r.Reason, r.State, r.Code, r.Message, id, r.RefundRR} {
			cell, _ := excelize.CoordinatesToCellName(i+1, n+2)
			_ = f.SetCellStr(batchSheet, cell, v)
		}
	}
	var out bytes.Buffer
	if _, err := f.WriteTo(&out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
