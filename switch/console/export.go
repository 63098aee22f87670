package console

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/query"
	"github.com/shoudan/shoudan/terminals"
	"github.com/xuri/excelize/v2"
)

// XLSXMaxRows is the largest result offered as Excel; above it the download is CSV (the
// acquirer practice: a spreadsheet of more rows is unwieldy, and CSV streams in flat memory).
const XLSXMaxRows = 20000

// ExportHeader is the downloads' header row (Chinese and English).
var ExportHeader = []string{"时间 Time", "交易日 Trade day", "清算日 Settle date", "类型 Kind", "商户号 MID", "商户名 Merchant", "终端号 TID", "操作员 Operator",
	"批次 Batch", "流水 STAN", "参考号 RRN", "授权码 Auth", "卡号 Card", "卡组织 Org", "金额 Amount", "应答码 Code", "状态 State", "规则 Rule", "原因 Reason"}

func exportRow(t *journal.Txn, name string) []string {
	return []string{t.CreatedAt.Local().Format("2006-01-02 15:04:05"), t.LocalDay.Format("2006-01-02"), t.SettleDate.Format("2006-01-02"), t.Kind, t.MID, name,
		t.TID, t.Operator, t.Batch, t.STAN, t.RRN, t.AuthCode, t.PANMasked, t.CardOrg, terminals.FormatAmount(t.Amount), t.RespCode, string(t.State), t.Rule, t.Reason}
}

// txnExport downloads the query's result: ?format=xlsx (up to XLSXMaxRows rows) or csv. An xlsx
// request for more rows is redirected to the CSV of the same query. Every download is audited.
func (c *Console) txnExport(w http.ResponseWriter, r *http.Request, p *page) {
	if c.hidePAN(w, r) {
		return
	}
	f := readForm(r, c.today())
	qf, err := f.filter(p.User)
	if err == errNotFound {
		c.audit(r, p.User, backoffice.ActDenied, "export outside scope: "+r.URL.RawQuery, false)
		c.notFound(w, p)
		return
	}
	if err != nil {
		c.fail(w, p, http.StatusBadRequest, err.Error())
		return
	}
	format := r.URL.Query().Get("format")
	cnt := qf
	cnt.Limit = 1
	pg, err := query.List(r.Context(), c.Journal, cnt)
	if err != nil {
		c.fail(w, p, http.StatusBadRequest, err.Error())
		return
	}
	if format == "xlsx" && pg.Total > XLSXMaxRows {
		v := r.URL.Query()
		v.Set("format", "csv")
		http.Redirect(w, r, "/txn/export?"+v.Encode(), http.StatusSeeOther)
		return
	}
	qf.Limit, qf.Offset = 0, 0
	name := "shoudan-txn-" + c.Now().Format("20060102-150405")
	detail := fmt.Sprintf("%s, %d rows, filter %s", format, pg.Total, string(f.Query()))
	switch format {
	case "xlsx":
		w.Header().Set("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.xlsx"`)
		err = c.writeXLSX(r.Context(), w, p, qf)
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
		err = c.WriteCSV(r.Context(), w, p.merchantName, qf)
	default:
		c.fail(w, p, http.StatusBadRequest, fmt.Sprintf("format: expected xlsx or csv, found %q", format))
		return
	}
	c.audit(r, p.User, backoffice.ActExport, detail+errSuffix(err), err == nil)
	if err != nil {
		c.Log.Error("console export", "err", err.Error())
	}
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}

// WriteCSV streams the query's rows as CSV (UTF-8 with a BOM, so that Excel reads the Chinese),
// one row at a time from the journal to w: memory stays flat whatever the row count.
func (c *Console) WriteCSV(ctx context.Context, w io.Writer, names func(string) string, qf query.Filter) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString("\ufeff")
	cw := csv.NewWriter(bw)
	if err := cw.Write(ExportHeader); err != nil {
		return err
	}
	fl, _ := w.(http.Flusher)
	n := 0
	var total int64
	err := query.Each(ctx, c.Journal, qf, func(t *journal.Txn) error {
		n++
		total += t.Amount
		if err := cw.Write(exportRow(t, names(t.MID))); err != nil {
			return err
		}
		if n%2000 == 0 {
			cw.Flush()
			if err := bw.Flush(); err != nil {
				return err
			}
			if fl != nil {
				fl.Flush()
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	cw.Write([]string{"合计 Total", fmt.Sprintf("%d", n), "", "", "", "", "", "", "", "", "", "", "", "", terminals.FormatAmount(total)})
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// writeXLSX writes the rows with excelize's stream writer (rows go to a temporary file, not
// memory), a total row, and a second sheet with the summary by trade day.
func (c *Console) writeXLSX(ctx context.Context, w io.Writer, p *page, qf query.Filter) error {
	x := excelize.NewFile()
	defer x.Close()
	const sheet = "交易 Transactions"
	x.SetSheetName("Sheet1", sheet)
	sw, err := x.NewStreamWriter(sheet)
	if err != nil {
		return err
	}
	_ = sw.SetColWidth(1, 1, 20)
	_ = sw.SetColWidth(13, 13, 20)
	bold, _ := x.NewStyle(&excelize.Style{Font: &excelize.Font{Bold: true}})
	amountStyle, _ := x.NewStyle(&excelize.Style{NumFmt: 4}) // #,##0.00
	row := 1
	write := func(cells []any, style int) error {
		cell, _ := excelize.CoordinatesToCellName(1, row)
		row++
		return sw.SetRow(cell, cells, excelize.RowOpts{StyleID: style})
	}
	head := make([]any, len(ExportHeader))
	for i, h := range ExportHeader {
		head[i] = h
	}
	if err := write(head, bold); err != nil {
		return err
	}
	n := 0
	var total int64
	err = query.Each(ctx, c.Journal, qf, func(t *journal.Txn) error {
		cells := exportRow(t, p.merchantName(t.MID))
		out := make([]any, len(cells))
		for i, s := range cells {
			out[i] = s
		}
		out[14] = excelize.Cell{Value: float64(t.Amount) / 100, StyleID: amountStyle} // amount as a number (yuan)
		n++
		total += t.Amount
		return write(out, 0)
	})
	if err != nil {
		return err
	}
	tot := make([]any, 15)
	tot[0], tot[1] = "合计 Total", n
	tot[14] = excelize.Cell{Value: float64(total) / 100, StyleID: amountStyle}
	if err := write(tot, bold); err != nil {
		return err
	}
	if err := sw.Flush(); err != nil {
		return err
	}
	if sum, err := query.Summarize(ctx, c.Journal, qf, query.ByDay, p.merchantName); err == nil {
		const s2 = "汇总 Summary"
		x.NewSheet(s2)
		hdr := []any{"交易日 Trade day"}
		for _, col := range query.Columns {
			hdr = append(hdr, col.Head)
		}
		x.SetSheetRow(s2, "A1", &hdr)
		for i, s := range append(sum.Rows, sum.Total) {
			cells := []any{s.Key}
			for _, v := range s.Cells() {
				cells = append(cells, v)
			}
			cell, _ := excelize.CoordinatesToCellName(1, i+2)
			x.SetSheetRow(s2, cell, &cells)
		}
	}
	_, err = x.WriteTo(w)
	return err
}

// exportLinks are the download links of a query.
func exportLink(f form, format string) string {
	v, _ := url.ParseQuery(string(f.Query()))
	v.Set("format", format)
	return "/txn/export?" + v.Encode()
}

var _ = time.Second
