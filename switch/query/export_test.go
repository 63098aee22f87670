package query

import "github.com/shoudan/shoudan/switch/journal"

// ListSQL is the statement List runs for f, for the plan test.
func ListSQL(f Filter, v *journal.Vault) (string, []any, error) {
	w, args, err := where(f, v)
	if err != nil {
		return "", nil, err
	}
	return "SELECT " + journal.TxnColumns + " FROM txn WHERE " + w + order(f) + " LIMIT 50", args, nil
}
