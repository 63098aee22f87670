-- More of the commonest values written as NULL (issue 13, after migration 0026): kind
-- 'purchase', processing code '000000' and card organisation 'CUP' (journal.queueInsert), 20
-- bytes of most request rows. The txn view shows them.

ALTER TABLE txn_request ALTER COLUMN kind DROP NOT NULL, ALTER COLUMN proc_code DROP NOT NULL, ALTER COLUMN card_org DROP NOT NULL;

CREATE OR REPLACE VIEW txn AS
SELECT w.checks, w.id, w.created_at, coalesce(o.at, w.updated_at, w.created_at) AS updated_at, w.amount, w.orig_id,
       coalesce(o.refunded, w.refunded, 0) AS refunded, coalesce(o.issuer_us, w.issuer_us) AS issuer_us,
       w.local_day, w.settle_date, coalesce(o.went_upstream, w.went_upstream) AS went_upstream, w.has_pin,
       coalesce(w.env, 'production') AS env, w.mid, w.tid,
       coalesce(w.batch, lpad((w.dkey / 10000000000)::text, 6, '0')) AS batch,
       coalesce(w.stan, lpad((w.dkey / 10000 % 1000000)::text, 6, '0')) AS stan,
       coalesce(w.mti, lpad((w.dkey % 10000)::text, 4, '0')) AS mti, coalesce(w.kind, 'purchase') AS kind, coalesce(w.proc_code, '000000') AS proc_code, w.entry_mode, w.type_code,
       w.pan_masked, w.pan_hash, coalesce(w.card_org, 'CUP') AS card_org, w.mcc, w.rrn,
       coalesce(o.auth_code, w.auth_code, '') AS auth_code, coalesce(o.resp_code, w.resp_code, '') AS resp_code,
       coalesce(o.issuer_code, CASE WHEN o.rule IS NULL THEN o.resp_code END, w.issuer_code, '') AS issuer_code, w.up_trace, w.up_time,
       coalesce(o.state, w.state) AS state,
       coalesce(o.rule, CASE WHEN o.resp_code IS NOT NULL THEN 'issuer' END, w.rule, 'acquirer-checks') AS rule,
       coalesce(o.reason, CASE WHEN coalesce(o.rule, CASE WHEN o.resp_code IS NOT NULL THEN 'issuer' END) = 'issuer' THEN 'issuer answered Approved' END,
           w.reason, 'passed every acquirer check') AS reason,
       w.req_hash, (SELECT r.sealed FROM txn_reversal r WHERE r.id = w.id AND r.local_day = w.local_day) AS reversal, w.operator, coalesce(w.req_mcc, '') AS req_mcc, w.dev_serial, w.dev_sdk, w.dev_check,
       coalesce(o.balance, w.balance) AS balance, coalesce(o.via, w.via) AS via,
       w.term, w.dkey
FROM txn_request w
LEFT JOIN txn_outcome o ON o.id = w.id AND o.local_day = w.local_day;
