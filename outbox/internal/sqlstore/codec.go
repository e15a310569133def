package sqlstore

import (
	gojson "github.com/goccy/go-json"
)

// decodeStored decodes JSON this store wrote (a referral or a referral version, the identifiers) into v.
//
// Every delivery that writes a Task version decodes its referral's whole record inside the write
// transaction, on SQLite inside the one writer. For a typical 2.1 KB record (BenchmarkDecodeStored)
// encoding/json took 22–28 µs and 74 allocations, goccy/go-json 3.5–4.5 µs and 61, and go-json-experiment
// (encoding/json/v2's prototype, already in the module graph) 11.8 µs and 25. The store only ever
// decodes what encoding/json encoded for it, and FuzzDecodeStored holds the two decoders to the same result
// on every input encoding/json accepts. Encoding stays with encoding/json (5.6 µs a record against
// go-json's 2.2 µs, once a version), so that the bytes stored keep the one format they have always had.
func decodeStored(data []byte, v any) error {
	return gojson.Unmarshal(data, v)
}
