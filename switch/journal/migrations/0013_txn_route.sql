-- The issuer route each transaction took (issue 12): the route's name and the endpoint that
-- carried the request ('' when no endpoint of the route was up and the terminal got 91), and
-- whether that was the route's secondary. Its own table, written in the outcome's commit, so
-- that txn keeps its shape.
CREATE TABLE IF NOT EXISTS txn_route (
    txn_id    bigint PRIMARY KEY,
    route     text NOT NULL,
    endpoint  text NOT NULL,
    secondary boolean NOT NULL DEFAULT false,
    at        timestamptz NOT NULL DEFAULT now()
);
