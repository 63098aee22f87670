package console_test

import (
	"context"
	"strings"
	"testing"
	"time"

	rc "github.com/shoudan/shoudan/responsecodes"
	"github.com/shoudan/shoudan/switch/switchtest"
	"github.com/stretchr/testify/require"
)

// TestSettlementPages: after a close, the acquirer sees every merchant's settlement of the date
// (the newest closed by default: yesterday's), a merchant only its own; a settlement's page lists
// its transactions and the balance; the statement downloads as .xlsx and CSV.
func TestSettlementPages(t *testing.T) {
	e := start(t, switchtest.Options{})
	d := e.SignedOn("10000001")
	r, err := d.Purchase(good, 12345)
	require.NoError(t, err)
	require.Equal(t, rc.Approved, r.Code())
	conf := e.Config.Settlement
	day := conf.Cutoff.Date(time.Now())
	st := *e.Settler // its own clock: the date's cut-off has passed for it
	st.Now = func() time.Time { return conf.Cutoff.At(day).Add(conf.CloseDelay + time.Minute) }
	_, err = st.Close(context.Background(), day)
	require.NoError(t, err)
	date := day.Format("2006-01-02")
	mid := "898310058120001"

	admin := e.as(t, "admin")
	code, body := admin.get("/settlement")
	require.Equal(t, 200, code)
	require.Contains(t, body, `/settlement/`+date+`/`+mid)
	require.Contains(t, body, `id="total-takings">123.45<`)
	code, body = admin.get("/settlement/" + date + "/" + mid)
	require.Equal(t, 200, code, body)
	require.Contains(t, body, r.Resp.RRN)
	require.NotContains(t, body, "6222021234567890123")

	shop := e.as(t, "shop-admin")
	code, body = shop.get("/settlement?date=" + date)
	require.Equal(t, 200, code)
	require.Contains(t, body, mid)
	code, _ = shop.get("/settlement?mid=898310053110002")
	require.Equal(t, 404, code, "a merchant asks for another merchant's settlement")
	code, _ = shop.get("/settlement/" + date + "/898310053110002")
	require.Equal(t, 404, code)

	code, _ = e.as(t, "shop-op01").get("/settlement")
	require.Equal(t, 403, code, "a cashier limited to one terminal does not see the merchant's settlement")

	resp, err := shop.http.Get(e.base + "/settlement/" + date + "/" + mid + "/statement.xlsx")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Content-Type"), "spreadsheetml")
	b := make([]byte, 2)
	_, _ = resp.Body.Read(b)
	require.Equal(t, "PK", string(b), "an .xlsx is a zip")
	code, body = shop.get("/settlement/" + date + "/" + mid + "/statement.csv")
	require.Equal(t, 200, code)
	require.True(t, strings.Contains(body, "合计 total") && strings.Contains(body, r.Resp.RRN), body)
}
