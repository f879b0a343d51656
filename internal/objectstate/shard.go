package objectstate

import (
	"hash/fnv"
	"strconv"
)

// Shards is how many partitions each collection's rows are spread over. Table storage serves one partition
// from one server, with a target of about 2,000 entities per second (Microsoft's "Scalability and
// performance targets for Table storage"), so one partition per collection caps a burst at that rate
// whatever the account allows; 16 partitions lift the cap sixteenfold. More shards cost more: a page of
// 200 objects is committed in one transaction per partition it touches, so 16 partitions mean about 16
// transactions per page where 64 would mean about 50.
const Shards = 16

// partitionOf is the partition of an object's row: the collection, a hyphen, and the shard of the id
// (FNV-1a of the lower-case id, modulo Shards), e.g. users-7. A hash, not a prefix of the id, so that ids
// of any shape spread evenly: GUIDs, drive item ids, base64 message ids, numeric ids.
func partitionOf(collection, row string) string {
	return collection + "-" + strconv.Itoa(ShardOf(row))
}

// ShardOf is the shard (0 … Shards-1) of an object id's row, whatever its case. Writers of work messages
// group notifications by it, so that one worker invocation's rows fall in few partitions: its reads and
// its commit take one request per partition touched.
func ShardOf(id string) int {
	h := fnv.New32a()
	h.Write([]byte(rowKey(id)))
	return int(h.Sum32() % Shards)
}

// legacyCollections are the collections whose rows earlier versions kept in one partition named after
// the collection (partition "users", row the id). Such a row is read when the sharded layout has none for
// an object, and moved to its shard by the next commit of that object, so an object unchanged since the
// upgrade is still recognised as unchanged. Only these two: no other collection ever had the old layout.
var legacyCollections = map[string]bool{"users": true, "groups": true}
