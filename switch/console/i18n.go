package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/shoudan/shoudan/terminals"
)

// labels are the console's words: Chinese first (the default), English on the language switch.
var labels = map[string][2]string{
	"app":                    {"收单后台", "Acquiring back office"},
	"login":                  {"登录", "Log in"},
	"logout":                 {"退出", "Log out"},
	"login_name":             {"登录名", "Login name"},
	"password":               {"密码", "Password"},
	"bad_login":              {"登录名或密码错误", "Wrong login name or password"},
	"locked":                 {"连续登录失败次数过多，账户已锁定，请稍后再试或联系管理员", "Too many failed logins: the account is locked for a while; try later or ask an administrator"},
	"disabled":               {"账户已停用", "The account is disabled"},
	"unavailable":            {"系统暂时不可用，请稍后再试", "The system is unavailable; try again shortly"},
	"home":                   {"首页", "Home"},
	"transactions":           {"交易查询", "Transactions"},
	"transaction":            {"交易", "Transaction"},
	"summary":                {"交易汇总", "Summary"},
	"monitor":                {"实时监控", "Live monitor"},
	"terminals":              {"终端管理", "Terminals"},
	"terminal":               {"终端", "Terminal"},
	"merchants":              {"商户管理", "Merchants"},
	"merchant":               {"商户", "Merchant"},
	"users":                  {"操作员管理", "Users"},
	"audit":                  {"审计日志", "Audit log"},
	"change_password":        {"修改密码", "Change password"},
	"old_password":           {"当前密码", "Current password"},
	"new_password":           {"新密码（6-20位，含字母和数字）", "New password (6-20 characters, letters and digits)"},
	"again":                  {"再次输入新密码", "New password again"},
	"passwords_differ":       {"两次输入的新密码不一致", "The two new passwords differ"},
	"password_changed":       {"密码已修改，其他会话已退出", "Password changed; your other sessions were logged out"},
	"today":                  {"今日", "Today"},
	"yesterday":              {"昨日", "Yesterday"},
	"todays_data":            {"今日数据", "Today's data"},
	"income":                 {"收入", "Income"},
	"count":                  {"笔数", "Count"},
	"card_org":               {"卡组织", "Card organisation"},
	"mid":                    {"商户号", "MID"},
	"tid":                    {"终端号", "TID"},
	"name":                   {"名称", "Name"},
	"name_en":                {"英文名", "English name"},
	"mcc":                    {"MCC", "MCC"},
	"enabled":                {"启用", "Enabled"},
	"direct":                 {"直联", "Direct connection"},
	"qps":                    {"小额双免", "No-PIN contactless (双免)"},
	"qps_registered":         {"双免白名单登记日", "双免 whitelist registration date"},
	"qps_limit":              {"双免限额", "双免 limit"},
	"refund_allowed":         {"允许退货", "Refunds allowed"},
	"acquirer":               {"收单机构", "Acquiring institution"},
	"terminal_count":         {"终端数", "Terminals"},
	"merchant_count":         {"商户数", "Merchants"},
	"env":                    {"环境", "Environment"},
	"serial":                 {"序列号", "Serial"},
	"signed_on":              {"签到", "Signed on"},
	"batch":                  {"批次号", "Batch"},
	"last_txn":               {"最近交易", "Last transaction"},
	"recent":                 {"最近交易", "Recent transactions"},
	"never":                  {"从未签到", "never signed on"},
	"yes":                    {"是", "yes"},
	"no":                     {"否", "no"},
	"from":                   {"起始日期", "From"},
	"to":                     {"截止日期", "To"},
	"settle_from":            {"清算日起", "Settled from"},
	"settle_to":              {"清算日止", "Settled to"},
	"operator":               {"操作员号", "Operator"},
	"card":                   {"卡号（后4位或完整卡号）", "Card (last 4 or full number)"},
	"min":                    {"最小金额", "Min amount"},
	"max":                    {"最大金额", "Max amount"},
	"code":                   {"应答码", "Response code"},
	"kind":                   {"交易类型", "Kind"},
	"state":                  {"状态", "State"},
	"rrn":                    {"参考号", "RRN"},
	"auth":                   {"授权码", "Auth code"},
	"stan":                   {"流水号", "STAN"},
	"amount":                 {"金额", "Amount"},
	"time":                   {"时间", "Time"},
	"any":                    {"全部", "any"},
	"search":                 {"查询", "Search"},
	"advanced":               {"高级查询", "Advanced search"},
	"reset":                  {"重置", "Reset"},
	"download_xlsx":          {"下载 Excel", "Download Excel"},
	"download_csv":           {"下载 CSV", "Download CSV"},
	"csv_only":               {"结果超过 20,000 条，仅提供 CSV 下载", "More than 20,000 rows: CSV download only"},
	"total_rows":             {"共 %d 条", "%d rows"},
	"prev":                   {"上一页", "Previous"},
	"next":                   {"下一页", "Next"},
	"page":                   {"第 %d / %d 页", "page %d of %d"},
	"no_rows":                {"没有符合条件的交易", "No transactions match"},
	"by_day":                 {"按交易日", "By trade day"},
	"by_settle":              {"按清算日", "By settlement date"},
	"by_merchant":            {"按商户", "By merchant"},
	"by_org":                 {"按卡组织", "By card organisation"},
	"by_terminal":            {"按终端", "By terminal"},
	"total":                  {"合计", "Total"},
	"decision":               {"决策过程", "Decision"},
	"checks_passed":          {"通过的检查", "Checks passed"},
	"decided_by":             {"决定规则", "Decided by"},
	"why":                    {"原因", "Why"},
	"receipt":                {"签购单重打印", "Receipt reprint"},
	"print":                  {"打印", "Print"},
	"original":               {"原交易", "Original"},
	"live":                   {"自动更新中", "updating live"},
	"newest20":               {"最新 20 笔交易，最新在前", "The newest 20 transactions, newest first"},
	"not_found":              {"没有找到该页面或记录", "No such page or record"},
	"forbidden":              {"您的角色无权访问此页面", "Your role may not open this page"},
	"read_only":              {"此处暂不能修改商户和终端", "Merchants and terminals cannot be changed here"},
	"role":                   {"角色", "Role"},
	"tids":                   {"分配终端（逗号分隔，空为全部）", "Assigned terminals (comma-separated, empty = all)"},
	"add_user":               {"新增操作员", "Add user"},
	"user_added":             {"已新增", "Added"},
	"disable":                {"停用", "Disable"},
	"enable":                 {"启用", "Enable"},
	"status":                 {"状态", "Status"},
	"locked_until":           {"锁定至", "Locked until"},
	"not_yourself":           {"不能停用自己", "You cannot disable yourself"},
	"who":                    {"用户", "Who"},
	"what":                   {"操作", "What"},
	"detail":                 {"详情", "Detail"},
	"from_where":             {"来源", "From"},
	"ok":                     {"结果", "Result"},
	"older":                  {"更早", "Older"},
	"edit":                   {"修改", "Edit"},
	"save":                   {"保存", "Save"},
	"apply":                  {"确认应用", "Apply"},
	"reason":                 {"原因", "Reason"},
	"preview":                {"预览影响", "Preview"},
	"preview_title":          {"变更影响预览（按近 7 天交易回放）", "Impact of the change (the last 7 days replayed)"},
	"preview_days":           {"近 7 天", "Last 7 days"},
	"preview_replayed":       {"笔交易已回放", "transactions replayed"},
	"preview_changed":        {"笔将被改判", "would be decided differently"},
	"preview_undetermined":   {"笔无法判定（依赖当时的密钥或原交易状态）", "undetermined (they depend on keys or originals of that moment)"},
	"preview_was":            {"原结果", "Was"},
	"preview_would":          {"变更后", "Would be"},
	"preview_apply_hint":     {"尚未应用任何变更：确认无误后点击“确认应用”。", "Nothing has been applied yet: press Apply to make the change."},
	"register":               {"登记终端", "Register a terminal"},
	"new_merchant":           {"新增商户", "New merchant"},
	"role.acquirer_admin":    {"收单管理员", "Acquirer admin"},
	"role.acquirer_ops":      {"收单运营", "Acquirer operations"},
	"role.merchant_admin":    {"商户管理员", "Merchant admin"},
	"role.merchant_operator": {"商户操作员", "Merchant operator"},
	"role.refund_reviewer":   {"退款审核员", "Refund reviewer"},
	"col.txns":               {"总笔数", "Txns"},
	"col.approved":           {"成功", "Approved"},
	"col.declined":           {"失败", "Declined"},
	"col.purchases":          {"消费笔数", "Purchases"},
	"col.purchase amt":       {"消费金额", "Purchase amt"},
	"col.voids":              {"撤销笔数", "Voids"},
	"col.void amt":           {"撤销金额", "Void amt"},
	"col.refunds":            {"退货笔数", "Refunds"},
	"col.refund amt":         {"退货金额", "Refund amt"},
	"col.reversed":           {"冲正笔数", "Reversed"},
	"col.reversed amt":       {"冲正金额", "Reversed amt"},
	"col.net":                {"净额", "Net"},
	"kind.purchase":          {"消费", "purchase"},
	"kind.void":              {"消费撤销", "void"},
	"kind.refund":            {"退货", "refund"},
	"kind.reversal":          {"冲正", "reversal"},
	"kind.balance":           {"余额查询", "balance"},
	"state.P":                {"处理中", "pending"},
	"state.A":                {"成功", "approved"},
	"state.D":                {"失败", "declined"},
	"state.V":                {"已撤销", "voided"},
	"state.R":                {"已冲正", "reversed"},
	"state.T":                {"超时已冲正", "timed out"},
}

func translate(lang, key string) string {
	l, ok := labels[key]
	if !ok {
		return key
	}
	if lang == "en" {
		return l[1]
	}
	return l[0]
}

var funcs = template.FuncMap{
	"yuan": terminals.FormatAmount,
	"day":  func(t time.Time) string { return t.Format("2006-01-02") },
	"when": func(t time.Time) string {
		if t.IsZero() || t.Unix() <= 0 {
			return ""
		}
		return t.Local().Format("2006-01-02 15:04:05")
	},
	"str":  func(b byte) string { return string(b) },
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
	"printf2": func(format string, a ...any) string {
		return fmtSprintf(format, a...)
	},
	"export": exportLink,
	"future": func(t time.Time) bool { return t.After(time.Now()) },
	"base": func(path string) string {
		if i := strings.IndexByte(path, '?'); i >= 0 {
			return path[:i]
		}
		return path
	},
}

func fmtSprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }
