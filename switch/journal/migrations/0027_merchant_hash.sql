-- A merchant's rows are found by the hash of its MID (issue 13). (mid, local_day, id) was 40 B an
-- entry: too wide for PostgreSQL's split-after-the-new-item choice, so while a day fills, a
-- merchant's group splits its pages in half as soon as any other merchant's rows follow it
-- (about 70 B of index per live transaction in the soak). (hashtext(mid), id) is an int4 and an
-- int8, 24 B, like (term, id) (migration 0024); within a day's partition local_day was one
-- value anyway. A reader of a merchant's rows says hashtext(mid) = hashtext($1) beside mid = $1
-- (another merchant with the same hash is filtered out by the second).
DROP INDEX txn_merchant_day;
CREATE INDEX txn_merchant_day ON txn_request (hashtext(mid), id);
