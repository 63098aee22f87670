-- Closed days whose indexes were rebuilt (issue 13). Rows of a busy day reach each terminal's
-- index range from hundreds of terminals at once, so the B-tree splits its pages in half and
-- they stay half full: about 110 of the 950 bytes a live transaction takes. Once a day is
-- closed (nothing but a late refund writes to it) the upkeep rebuilds its request and outcome
-- indexes with REINDEX CONCURRENTLY (packed to their fillfactor, the write path goes on) and
-- vacuums its reversal partition (emptied by settlement: the file is truncated). This table
-- says which days are done and what they weighed before and after.
CREATE TABLE txn_compacted (
    day          date PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    bytes_before bigint NOT NULL,
    bytes_after  bigint NOT NULL
);
