package journal

// The journal database's advisory locks, one key for each thing they serialise. Two uses of
// one key hold each other off: a settlement run on 8584 refused a zone PIN key change ("another
// node is changing the zone PIN key") and would have held up a day's partition creation on the
// write path.
const (
	LockPartitions int64 = 8584 // txn_ensure_partition (SQL, for its transaction)
	LockZoneKey    int64 = 8585 // RotateZoneKey (for its session)
	LockSettlement int64 = 8586 // a settlement run (switch/settlement, for its session)
	// 85840 is the registry's edit lock (terminals/registrydb)
)
