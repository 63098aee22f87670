package console

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shoudan/shoudan/spec/money"
	"github.com/shoudan/shoudan/switch/backoffice"
	"github.com/shoudan/shoudan/switch/journal"
	"github.com/shoudan/shoudan/switch/refunds"
)

// Refund pages (issue 16): the refund and void forms on a transaction's detail page, the
// application list with review, batch upload, the merchant's refund settings and API keys, the
// dynamic password enrolment and the notifications with every attempt. The rules, states and
// delivery live in package refunds; these handlers only check who may do what.

func init() {
	for k, v := range refundLabels {
		labels[k] = v
	}
	funcs["pair"] = func(p *page, v any) pagePair { return pagePair{P: p, V: v} }
}

// pagePair hands a sub-template the page and one value.
type pagePair struct {
	P *page
	V any
}

var refundLabels = map[string][2]string{
	"refunds":                 {"退款管理", "Refunds"},
	"refund":                  {"退款", "Refund"},
	"void":                    {"撤销", "Void"},
	"refund_submit":           {"提交退款", "Refund"},
	"void_submit":             {"撤销交易", "Void this transaction"},
	"refund_reason":           {"退款原因", "Reason"},
	"refundable":              {"可退金额", "Refundable"},
	"refunded":                {"已退金额", "Refunded"},
	"totp_code":               {"动态口令", "Dynamic password"},
	"review_mode_note":        {"本商户退款需审核：提交后由退款审核员审批", "This merchant reviews refunds: a reviewer approves yours before it is sent"},
	"applications":            {"退款申请", "Refund applications"},
	"refund_state":            {"退款状态", "State"},
	"applied_by":              {"申请人", "Applied by"},
	"decided_by_user":         {"审核人", "Reviewed by"},
	"history":                 {"处理记录", "History"},
	"approve":                 {"审核通过", "Approve"},
	"reject":                  {"拒绝", "Reject"},
	"review_note":             {"审核意见", "Note"},
	"own_application":         {"审核员不能审核自己提交的申请", "A reviewer cannot approve or reject their own application"},
	"batch":                   {"批量退款", "Batch refunds"},
	"batch_template":          {"下载模板 (.xlsx)", "Download the template (.xlsx)"},
	"batch_upload":            {"上传", "Upload"},
	"batch_file":              {"退款文件", "Refund file"},
	"batch_result":            {"下载结果文件", "Download the result file"},
	"batch_again":             {"该文件已上传过：以下为首次上传的结果，未重复退款", "This file was uploaded before: these are its first results; nothing was refunded again"},
	"refund_settings":         {"退款设置", "Refund settings"},
	"review_mode":             {"退款需审核", "Refunds need review"},
	"totp_required":           {"退款需动态口令", "Refunds need the dynamic password"},
	"callbacks":               {"通知地址（最多3个，依次尝试）", "Callback URLs (up to 3, tried in order)"},
	"notify_payments":         {"支付成功也通知", "Also notify approved payments"},
	"save":                    {"保存", "Save"},
	"saved":                   {"已保存", "Saved"},
	"api_keys":                {"接口密钥", "API keys"},
	"new_key":                 {"新建密钥", "New key"},
	"key_shown_once":          {"请立即保存密钥，它只显示这一次", "Copy the secret now: it is shown only this once"},
	"revoke":                  {"停用", "Revoke"},
	"totp":                    {"动态口令", "Dynamic password"},
	"totp_enrol":              {"绑定验证器", "Enrol an authenticator"},
	"totp_enrolled":           {"已绑定验证器", "Authenticator enrolled"},
	"totp_scan":               {"用验证器应用扫描二维码，或输入密钥，然后输入显示的6位口令确认", "Scan the QR code with an authenticator app (or enter the secret), then confirm with the 6-digit code it shows"},
	"confirm":                 {"确认", "Confirm"},
	"notifications":           {"通知记录", "Notifications"},
	"attempts":                {"尝试", "Attempts"},
	"event":                   {"事件", "Event"},
	"url":                     {"地址", "URL"},
	"rstate.applied":          {"已申请", "applied"},
	"rstate.approved":         {"已审核", "approved"},
	"rstate.rejected":         {"已拒绝", "rejected"},
	"rstate.sent":             {"已发送", "sent"},
	"rstate.succeeded":        {"退款成功", "succeeded"},
	"rstate.failed":           {"退款失败", "failed"},
	"rstate.pending clearing": {"待清算", "pending clearing"},
	"rstate.invalid":          {"格式错误", "invalid"},
	"rstate.duplicate":        {"重复行", "duplicate"},
	"nstate.pending":          {"待送达", "pending"},
	"nstate.delivered":        {"已送达", "delivered"},
	"nstate.expired":          {"已过期", "expired"},
}

// refundRoutes registers the refund pages.
func (c *Console) refundRoutes(mux *http.ServeMux, auth func(string, func(http.ResponseWriter, *http.Request, *page))) {
	auth("POST /txn/{id}/refund", c.refundPost)
	auth("GET /refunds", c.refundList)
	auth("GET /refunds/{id}", c.refundDetail)
	auth("POST /refunds/{id}/{decision}", c.refundDecide)
	auth("GET /refunds/batch", c.batchPage)
	auth("GET /refunds/batch/template.xlsx", c.batchTemplate)
	auth("GET /refunds/batch/{id}/result.xlsx", c.batchResult)
	mux.Handle("POST /refunds/batch", multipartForm(c.authed(c.batchUpload)))
	auth("GET /refunds/settings", c.refundSettings)
	auth("POST /refunds/settings", c.refundSettingsSave)
	auth("GET /totp", c.totpPage)
	auth("POST /totp", c.totpPost)
	auth("GET /notifications", c.notificationList)
}

// refundForm is the refund or void form on a transaction's detail page.
type refundForm struct {
	Void      bool   // today's settlement date: a void, else a refund
	Left      int64  // what is left to refund
	Token     string // the form's idempotency key
	TOTP      bool   // the dynamic password is asked
	Review    bool
	Refunds   []*refunds.Refund
	CanReview bool
}

// newToken is a random form token (the idempotency key of one form).
func newToken() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// mayRefund: every merchant user who may read the transaction may ask; acquirer operations
// read only (an acquirer admin may refund on a merchant's behalf).
func mayRefund(u *backoffice.User) bool { return u.Role != backoffice.AcquirerOps }

// refundSection is the detail page's refund part: the form (for an approved purchase) and the
// refunds of this transaction.
func (c *Console) refundSection(r *http.Request, p *page, t *journal.Txn) *refundForm {
	if c.Refunds == nil || t.Kind != "purchase" {
		return nil
	}
	f := &refundForm{Token: newToken(), Left: t.Amount - t.Refunded, CanReview: p.Can("refunds.review")}
	f.Void = sameDay(t.SettleDate, c.Refunds.Switch.SettleDateOf(c.Refunds.Switch.Now())) && t.LocalDay.Equal(dayOf(c.Refunds.Switch.Now()))
	if set, err := c.Refunds.Settings(r.Context(), t.MID); err == nil {
		f.TOTP, f.Review = set.TOTPRequired, set.Review
	}
	f.Refunds, _ = c.Refunds.List(r.Context(), refunds.Filter{MID: t.MID, OrigID: t.ID})
	return f
}

func sameDay(a, b time.Time) bool { return a.Format("2006-01-02") == b.Format("2006-01-02") }

func dayOf(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, t.Location())
}

func actor(u *backoffice.User) refunds.Actor { return refunds.Actor{Name: u.Login, UserID: u.ID} }

// refundPost is the detail page's refund or void form.
func (c *Console) refundPost(w http.ResponseWriter, r *http.Request, p *page) {
	t := c.shownTxn(w, r, p)
	if t == nil {
		return
	}
	if c.Refunds == nil || !mayRefund(p.User) {
		c.forbidden(w, p)
		return
	}
	f := r.PostForm
	q := refunds.Request{MID: t.MID, Kind: f.Get("kind"), OrigRRN: t.RRN, OrigDay: t.LocalDay, Reason: strings.TrimSpace(f.Get("reason")),
		IdemKey: "console:" + f.Get("token"), Source: refunds.FromConsole, By: actor(p.User), TOTP: f.Get("totp")}
	if q.Kind != "void" {
		amount, err := money.Positive(f.Get("amount"))
		if err != nil {
			c.refundAnswer(w, r, p, t, nil, "amount: "+err.Error())
			return
		}
		q.Amount = amount
	}
	ref, err := c.Refunds.Request(r.Context(), q)
	if err != nil {
		c.refundAnswer(w, r, p, t, nil, err.Error())
		return
	}
	if ref.ID != 0 && !ref.Final && ref.State != refunds.Applied {
		if got, err := c.Refunds.Wait(r.Context(), ref.ID, 3*time.Second); err == nil {
			ref = got
		}
	}
	c.refundAnswer(w, r, p, t, ref, "")
}

// refundAnswer shows the detail page again with the outcome.
func (c *Console) refundAnswer(w http.ResponseWriter, r *http.Request, p *page, t *journal.Txn, ref *refunds.Refund, errMsg string) {
	status := http.StatusOK
	switch {
	case errMsg != "":
		p.Error, status = errMsg, http.StatusBadRequest
	case ref.State == refunds.Failed:
		p.Error = fmt.Sprintf("%s: %s (%s %s)", p.T("rstate.failed"), ref.Why, p.T("code"), ref.Code)
	default:
		p.Flash = fmt.Sprintf("%s %s: %s", p.T(ref.Kind), ref.AmountString, p.T("rstate."+ref.State))
		if ref.ID != 0 {
			p.Flash += fmt.Sprintf(" (#%d)", ref.ID)
		}
	}
	t2, err := c.Journal.ByID(r.Context(), t.ID)
	if err == nil && t2 != nil {
		t = t2
	}
	c.renderDetail(w, r, p, t, status)
}

func (c *Console) refundFor(r *http.Request, p *page) (*refunds.Refund, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil, refunds.ErrNotFound
	}
	mid := p.User.MID
	if p.User.Role.Acquirer() {
		mid = ""
	}
	ref, err := c.Refunds.Get(r.Context(), mid, id)
	if err != nil {
		return nil, err
	}
	// a merchant operator sees the refunds of the transactions they may read
	if !p.User.Scope().Allows(ref.MID, ref.TID, "") && p.User.Role != backoffice.MerchantOperator {
		return nil, refunds.ErrNotFound
	}
	if p.User.Role == backoffice.MerchantOperator {
		o, err := c.Journal.ByID(r.Context(), ref.OrigID)
		if err != nil || o == nil || !p.User.Scope().Allows(o.MID, o.TID, o.Operator) {
			return nil, refunds.ErrNotFound
		}
	}
	return ref, nil
}

type refundListData struct {
	Refunds []*refunds.Refund
	State   string
	States  []string
}

// refundList is the application list, filtered by state.
func (c *Console) refundList(w http.ResponseWriter, r *http.Request, p *page) {
	if c.Refunds == nil {
		c.notFound(w, p)
		return
	}
	p.Title = p.T("applications")
	mid := p.User.MID
	if p.User.Role.Acquirer() {
		mid = strings.TrimSpace(r.URL.Query().Get("mid"))
	}
	st := r.URL.Query().Get("state")
	list, err := c.Refunds.List(r.Context(), refunds.Filter{MID: mid, State: st, Limit: 200})
	if err != nil {
		p.Error = err.Error()
	}
	if p.User.Role == backoffice.MerchantOperator { // only the refunds of their transactions
		var mine []*refunds.Refund
		for _, x := range list {
			if x.AppliedByID == p.User.ID {
				mine = append(mine, x)
			}
		}
		list = mine
	}
	p.Data = &refundListData{Refunds: list, State: st, States: []string{refunds.Applied, refunds.Approved, refunds.Rejected, refunds.Sent,
		refunds.Succeeded, refunds.Failed, refunds.PendingClearing}}
	c.render(w, p, "refunds.html", http.StatusOK)
}

type refundDetailData struct {
	R             *refunds.Refund
	History       []refunds.Event
	Notifications []*refunds.Notification
	CanDecide     bool
	Own           bool
	TOTP          bool
}

func (c *Console) refundDetail(w http.ResponseWriter, r *http.Request, p *page) {
	c.renderRefund(w, r, p, http.StatusOK)
}

func (c *Console) renderRefund(w http.ResponseWriter, r *http.Request, p *page, status int) {
	if c.Refunds == nil {
		c.notFound(w, p)
		return
	}
	ref, err := c.refundFor(r, p)
	if err != nil {
		c.notFound(w, p)
		return
	}
	p.Title = fmt.Sprintf("%s #%d", p.T(ref.Kind), ref.ID)
	d := &refundDetailData{R: ref, Own: ref.AppliedByID == p.User.ID}
	d.CanDecide = ref.State == refunds.Applied && p.Can("refunds.review") && !d.Own
	d.History, _ = c.Refunds.History(r.Context(), ref.ID)
	d.Notifications, _ = c.Refunds.Notifications(r.Context(), ref.MID, fmt.Sprintf("refund/%d/", ref.ID), 10)
	if set, err := c.Refunds.Settings(r.Context(), ref.MID); err == nil {
		d.TOTP = set.TOTPRequired
	}
	p.Data = d
	c.render(w, p, "refund_detail.html", status)
}

// refundDecide approves or rejects an application.
func (c *Console) refundDecide(w http.ResponseWriter, r *http.Request, p *page) {
	if c.Refunds == nil || !p.Can("refunds.review") {
		c.forbidden(w, p)
		return
	}
	ref, err := c.refundFor(r, p)
	if err != nil {
		c.notFound(w, p)
		return
	}
	note := strings.TrimSpace(r.PostForm.Get("note"))
	if r.PathValue("decision") == "approve" {
		ref, err = c.Refunds.Approve(r.Context(), ref.MID, ref.ID, actor(p.User), note, r.PostForm.Get("totp"))
		if err == nil && !ref.Final {
			ref, _ = c.Refunds.Wait(r.Context(), ref.ID, 3*time.Second)
		}
	} else {
		ref, err = c.Refunds.Reject(r.Context(), ref.MID, ref.ID, actor(p.User), note)
	}
	status := http.StatusOK
	switch {
	case errors.Is(err, refunds.ErrOwnApplication):
		p.Error, status = p.T("own_application"), http.StatusForbidden
	case err != nil:
		p.Error, status = err.Error(), http.StatusBadRequest
	case ref.State == refunds.Failed:
		p.Error = fmt.Sprintf("%s: %s (%s %s)", p.T("rstate.failed"), ref.Why, p.T("code"), ref.Code)
	default:
		p.Flash = p.T("rstate." + ref.State)
	}
	c.renderRefund(w, r, p, status)
}

// settingsMID is the merchant whose settings a user edits: their own (merchant admin), any
// (acquirer admin, ?mid=).
func (c *Console) settingsMID(r *http.Request, p *page) (string, bool) {
	switch p.User.Role {
	case backoffice.MerchantAdmin:
		return p.User.MID, true
	case backoffice.AcquirerAdmin:
		mid := strings.TrimSpace(r.FormValue("mid"))
		return mid, mid != "" && c.registry().Merchant(mid) != nil
	}
	return "", false
}

type settingsData struct {
	MID       string
	S         *refunds.Settings
	Keys      []refunds.APIKey
	NewKey    *refunds.APIKey
	Callbacks [3]string
}

func (c *Console) refundSettings(w http.ResponseWriter, r *http.Request, p *page) {
	c.renderSettings(w, r, p, nil, http.StatusOK)
}

func (c *Console) renderSettings(w http.ResponseWriter, r *http.Request, p *page, newKey *refunds.APIKey, status int) {
	mid, ok := c.settingsMID(r, p)
	if c.Refunds == nil || !ok {
		c.forbidden(w, p)
		return
	}
	p.Title = p.T("refund_settings") + " " + mid
	st, err := c.Refunds.Settings(r.Context(), mid)
	if err != nil {
		c.fail(w, p, http.StatusServiceUnavailable, err.Error())
		return
	}
	d := &settingsData{MID: mid, S: st, NewKey: newKey}
	copy(d.Callbacks[:], st.Callbacks)
	d.Keys, _ = c.Refunds.Keys(r.Context(), mid)
	p.Data = d
	c.render(w, p, "refund_settings.html", status)
}

func (c *Console) refundSettingsSave(w http.ResponseWriter, r *http.Request, p *page) {
	mid, ok := c.settingsMID(r, p)
	if c.Refunds == nil || !ok {
		c.forbidden(w, p)
		return
	}
	f := r.PostForm
	var newKey *refunds.APIKey
	var err error
	switch f.Get("action") {
	case "key":
		newKey, err = c.Refunds.CreateKey(r.Context(), mid, p.User.Login)
	case "revoke":
		err = c.Refunds.RevokeKey(r.Context(), mid, f.Get("key"), p.User.Login)
	default:
		st := &refunds.Settings{MID: mid, Review: f.Get("review") == "on", TOTPRequired: f.Get("totp") == "on", NotifyPayments: f.Get("payments") == "on",
			Callbacks: []string{f.Get("cb1"), f.Get("cb2"), f.Get("cb3")}}
		err = c.Refunds.SaveSettings(r.Context(), st, p.User.Login)
	}
	status := http.StatusOK
	if err != nil {
		p.Error, status = err.Error(), http.StatusBadRequest
	} else {
		p.Flash = p.T("saved")
	}
	c.renderSettings(w, r, p, newKey, status)
}

type totpData struct {
	Enrolled bool
	URI      string
	Secret   string
	QR       string // data: URL of the otpauth QR code
}

func (c *Console) totpPage(w http.ResponseWriter, r *http.Request, p *page) {
	if c.Refunds == nil {
		c.notFound(w, p)
		return
	}
	p.Title = p.T("totp")
	p.Data = &totpData{Enrolled: c.Refunds.Enrolled(r.Context(), p.User.ID)}
	c.render(w, p, "totp.html", http.StatusOK)
}

// totpPost starts an enrolment (shows the otpauth URI, its QR code and the secret) or confirms
// it with a code.
func (c *Console) totpPost(w http.ResponseWriter, r *http.Request, p *page) {
	if c.Refunds == nil {
		c.notFound(w, p)
		return
	}
	p.Title = p.T("totp")
	d := &totpData{}
	status := http.StatusOK
	if code := r.PostForm.Get("code"); code != "" {
		if err := c.Refunds.ConfirmTOTP(r.Context(), p.User.ID, code); err != nil {
			p.Error, status = err.Error(), http.StatusBadRequest
		} else {
			p.Flash = p.T("totp_enrolled")
			c.audit(r, p.User, "totp_enrolled", p.User.Login, true)
		}
	} else {
		e, err := c.Refunds.EnrolTOTP(r.Context(), p.User.ID, p.User.Login)
		if err != nil {
			c.fail(w, p, http.StatusServiceUnavailable, err.Error())
			return
		}
		d.URI, d.Secret = e.URI, e.Secret
		if img, err := e.Key.Image(220, 220); err == nil {
			var b bytes.Buffer
			if png.Encode(&b, img) == nil {
				d.QR = "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
			}
		}
	}
	d.Enrolled = c.Refunds.Enrolled(r.Context(), p.User.ID)
	p.Data = d
	c.render(w, p, "totp.html", status)
}

type batchData struct {
	B    *refunds.Batch
	TOTP bool
}

func (c *Console) batchMID(p *page) (string, bool) {
	return p.User.MID, c.Refunds != nil && p.User.MID != "" && mayRefund(p.User)
}

func (c *Console) batchPage(w http.ResponseWriter, r *http.Request, p *page) {
	mid, ok := c.batchMID(p)
	if !ok {
		c.forbidden(w, p)
		return
	}
	p.Title = p.T("batch")
	d := &batchData{}
	if set, err := c.Refunds.Settings(r.Context(), mid); err == nil {
		d.TOTP = set.TOTPRequired
	}
	p.Data = d
	c.render(w, p, "refund_batch.html", http.StatusOK)
}

func (c *Console) batchTemplate(w http.ResponseWriter, r *http.Request, p *page) {
	b, err := refunds.Template()
	if err != nil {
		c.fail(w, p, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	w.Header().Set("Content-Disposition", `attachment; filename="refund-template.xlsx"`)
	_, _ = w.Write(b)
}

// batchUpload processes an uploaded file (multipart: multipartForm parsed it before the CSRF
// check read the token).
func (c *Console) batchUpload(w http.ResponseWriter, r *http.Request, p *page) {
	mid, ok := c.batchMID(p)
	if !ok {
		c.forbidden(w, p)
		return
	}
	p.Title = p.T("batch")
	d := &batchData{}
	file, hdr, err := r.FormFile("file")
	if err != nil {
		p.Error = p.T("batch_file") + ": " + err.Error()
		p.Data = d
		c.render(w, p, "refund_batch.html", http.StatusBadRequest)
		return
	}
	defer file.Close()
	rows, err := refunds.ParseBatch(file)
	if err == nil {
		d.B, err = c.Refunds.ProcessBatch(r.Context(), mid, hdr.Filename, rows, actor(p.User), r.PostForm.Get("totp"))
	}
	status := http.StatusOK
	if err != nil {
		p.Error, status = err.Error(), http.StatusBadRequest
	} else {
		c.Refunds.Refresh(r.Context(), d.B)
		if d.B.Again {
			p.Flash = p.T("batch_again")
		}
	}
	p.Data = d
	c.render(w, p, "refund_batch.html", status)
}

func (c *Console) batchResult(w http.ResponseWriter, r *http.Request, p *page) {
	mid, ok := c.batchMID(p)
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if !ok {
		c.forbidden(w, p)
		return
	}
	b, err := c.Refunds.BatchByID(r.Context(), mid, id)
	if err != nil {
		c.notFound(w, p)
		return
	}
	c.Refunds.Refresh(r.Context(), b)
	out, err := refunds.ResultFile(b)
	if err != nil {
		c.fail(w, p, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="refund-batch-%d-result.xlsx"`, b.ID))
	_, _ = w.Write(out)
}

// multipartForm parses a multipart body before the session check reads the CSRF token from it.
func multipartForm(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 8<<20)
		if err := r.ParseMultipartForm(8 << 20); err != nil {
			http.Error(w, "expected a multipart form of at most 8 MiB: "+err.Error(), http.StatusBadRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

type notificationsData struct {
	N []*refunds.Notification
}

func (c *Console) notificationList(w http.ResponseWriter, r *http.Request, p *page) {
	if c.Refunds == nil || p.User.Role == backoffice.MerchantOperator {
		c.forbidden(w, p)
		return
	}
	mid := p.User.MID
	if p.User.Role.Acquirer() {
		mid = strings.TrimSpace(r.URL.Query().Get("mid"))
	}
	p.Title = p.T("notifications")
	ns, err := c.Refunds.Notifications(r.Context(), mid, "", 100)
	if err != nil {
		p.Error = err.Error()
	}
	p.Data = &notificationsData{N: ns}
	c.render(w, p, "notifications.html", http.StatusOK)
}
