// Package responsecodes is the CUP response-code table (field 39) as data: code, Chinese text,
// English text and the terminal action class, used for responses, logs and tools.
package responsecodes

import "fmt"

// Action is what the terminal should do with a code (CUP classes A–E).
type Action byte

const (
	Success       Action = 'A' // approved
	Retry         Action = 'B' // failed, may retry
	NoRetry       Action = 'C' // failed, do not retry
	OperatorCheck Action = 'D' // operator action (e.g. pick-up, re-register)
	SystemFault   Action = 'E' // system fault
)

func (a Action) String() string {
	switch a {
	case Success:
		return "success"
	case Retry:
		return "fail, retry"
	case NoRetry:
		return "fail, do not retry"
	case OperatorCheck:
		return "operator action"
	case SystemFault:
		return "system fault"
	}
	return "unknown"
}

// Code is one row of the table.
type Code struct {
	Code    string
	Chinese string
	English string
	Action  Action
}

func (c Code) String() string { return fmt.Sprintf("%s %s (%s)", c.Code, c.English, c.Chinese) }

// Codes the switch itself produces, named for readability at the call sites.
const (
	Approved           = "00"
	InvalidMerchant    = "03"
	DoNotHonour        = "05"
	InvalidTxn         = "12"
	InvalidAmount      = "13"
	InvalidCard        = "14"
	NoOriginal         = "25"
	FormatError        = "30"
	InsufficientFunds  = "51"
	ExpiredCard        = "54"
	IncorrectPIN       = "55"
	NotPermittedToTerm = "58"
	AmountLimit        = "61"
	OriginalAmount     = "64"
	ExceedsFrequency   = "65"
	SignOnAgain        = "77"
	IssuerDown         = "91"
	Violation          = "93"
	Duplicate          = "94"
	ReconcileError     = "95"
	SystemMalfunction  = "96"
	UnknownTerminal    = "97"
	IssuerTimeout      = "98"
	MACFailed          = "A0"
)

// Table is the whole CUP POS table (after the CUP terminal specification's appendix and the CUP
// switch specification's English names).
var Table = []Code{
	{"00", "承兑或交易成功", "Approved", Success},
	{"01", "查发卡行", "Refer to card issuer", NoRetry},
	{"02", "查发卡行的特殊条件", "Refer to issuer, special condition", NoRetry},
	{"03", "无效商户", "Invalid merchant", NoRetry},
	{"04", "没收卡", "Pick-up", OperatorCheck},
	{"05", "不予承兑", "Do not honour", NoRetry},
	{"06", "出错", "Error", SystemFault},
	{"07", "特殊条件下没收卡", "Pick-up, special condition", OperatorCheck},
	{"09", "请求正在处理中", "Request in progress", Retry},
	{"12", "无效交易", "Invalid transaction", NoRetry},
	{"13", "无效金额", "Invalid amount", Retry},
	{"14", "无效卡号", "Invalid card number", Retry},
	{"15", "无此发卡行", "No such issuer", NoRetry},
	{"19", "重新送入交易", "Re-enter transaction", NoRetry},
	{"20", "无效应答", "Invalid response", NoRetry},
	{"21", "不做任何处理", "No action taken", NoRetry},
	{"22", "怀疑操作有误", "Suspected malfunction", NoRetry},
	{"23", "不可接受的交易费", "Unacceptable fee", NoRetry},
	{"25", "未能找到文件上记录", "Unable to locate original transaction", NoRetry},
	{"30", "格式错误", "Format error", NoRetry},
	{"31", "银联不支持的银行", "Bank not supported by switch", NoRetry},
	{"33", "过期的卡", "Expired card, pick-up", OperatorCheck},
	{"34", "有作弊嫌疑", "Suspected fraud, pick-up", OperatorCheck},
	{"35", "受卡方与安全保密部门联系", "Contact acquirer security", OperatorCheck},
	{"36", "受限制的卡", "Restricted card, pick-up", OperatorCheck},
	{"37", "呼受理方安全部门", "Call acquirer security", OperatorCheck},
	{"38", "超过允许的PIN试输入", "PIN tries exceeded, pick-up", OperatorCheck},
	{"39", "无此信用卡账户", "No credit account", NoRetry},
	{"40", "请求的功能尚不支持", "Function not supported", NoRetry},
	{"41", "丢失卡", "Lost card", OperatorCheck},
	{"42", "无此账户", "No universal account", Retry},
	{"43", "被窃卡", "Stolen card", OperatorCheck},
	{"44", "无此投资账户", "No investment account", NoRetry},
	{"45", "不允许降级交易", "Fallback transaction not allowed", NoRetry},
	{"51", "无足够的存款", "Insufficient funds", NoRetry},
	{"52", "无此支票账户", "No cheque account", NoRetry},
	{"53", "无此储蓄卡账户", "No savings account", NoRetry},
	{"54", "过期的卡", "Expired card", NoRetry},
	{"55", "不正确的PIN", "Incorrect PIN", NoRetry},
	{"56", "无此卡记录", "No card record", NoRetry},
	{"57", "不允许持卡人进行的交易", "Transaction not permitted to cardholder", NoRetry},
	{"58", "不允许终端进行的交易", "Transaction not permitted to terminal", NoRetry},
	{"59", "有作弊嫌疑", "Suspected fraud", NoRetry},
	{"60", "受卡方与安全保密部门联系", "Contact acquirer security", NoRetry},
	{"61", "超出金额限制", "Exceeds amount limit", NoRetry},
	{"62", "受限制的卡", "Restricted card", NoRetry},
	{"63", "违反安全保密规定", "Security violation", NoRetry},
	{"64", "原始金额不正确", "Original amount incorrect", NoRetry},
	{"65", "超出取款次数限制", "Exceeds frequency limit", NoRetry},
	{"66", "受卡方呼受理方安全保密部门", "Call acquirer security", NoRetry},
	{"67", "捕捉(没收卡)", "Hard capture", NoRetry},
	{"68", "收到的回答太迟", "Issuer response time-out", NoRetry},
	{"75", "允许的输入PIN次数超限", "PIN tries exceeded", NoRetry},
	{"77", "需要向网络中心签到", "Re-sign-on required (batch mismatch)", OperatorCheck},
	{"79", "脱机交易对账不平", "Offline transactions unbalanced", NoRetry},
	{"90", "日期切换正在处理", "Cut-off in progress", NoRetry},
	{"91", "发卡行或银联不能操作", "Issuer or switch inoperative", NoRetry},
	{"92", "金融机构或中间网络设施找不到或无法达到", "Routing destination not found", NoRetry},
	{"93", "交易违法、不能完成", "Violation of law, cannot complete", NoRetry},
	{"94", "重复交易", "Duplicate transaction", NoRetry},
	{"95", "调节控制错", "Reconcile error", NoRetry},
	{"96", "系统异常、失效", "System malfunction", NoRetry},
	{"97", "POS终端号找不到", "Terminal not registered", OperatorCheck},
	{"98", "银联收不到发卡行应答", "Issuer response not received", SystemFault},
	{"99", "PIN格式错", "PIN block format error", Retry},
	{"A0", "MAC校验错", "MAC verification failed", Retry},
}

var byCode = func() map[string]Code {
	m := make(map[string]Code, len(Table))
	for _, c := range Table {
		m[c.Code] = c
	}
	return m
}()

// Lookup returns the row of a code and whether it is in the table.
func Lookup(code string) (Code, bool) {
	c, ok := byCode[code]
	return c, ok
}

// Describe returns a code's row, or a row that says it is not in the table.
func Describe(code string) Code {
	if c, ok := byCode[code]; ok {
		return c
	}
	return Code{Code: code, Chinese: "未知应答码", English: "unknown response code", Action: NoRetry}
}
