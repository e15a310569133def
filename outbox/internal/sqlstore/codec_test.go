package sqlstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/socialrx/socialrx/mapping"
)

// filled sets every field reachable from v (structs, pointers, slices of one element, maps of one entry,
// strings, numbers, bools, times) to a value that is not zero, so that a round trip through the stored JSON
// carries every field a referral can hold, whatever fields its types gain later.
func filled(t testing.TB, v reflect.Value, text string) {
	t.Helper()
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(time.Date(2025, 3, 3, 9, 15, 0, 123456000, time.UTC)))
		return
	}
	if v.Type() == reflect.TypeFor[json.RawMessage]() {
		v.SetBytes([]byte(`{"k":[1,"<&>"]}`))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(text)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(-7)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(7)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(2.5)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		filled(t, v.Elem(), text)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		filled(t, v.Index(0), text)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		filled(t, k, text)
		filled(t, e, text)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				filled(t, v.Field(i), text)
			}
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf(text))
	default:
		t.Fatalf("filled: no value for a %s", v.Type())
	}
}

// storedSeeds are the stored JSON the store decodes: a referral with every field set (once with plain text,
// once with text that encoding/json escapes), its identifiers, and the empty and null forms.
func storedSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, text := range []string{"Frome Walking for Health", "<b>\"Peggy\" & co</b>\u2028\u2029 \\ é \U0001F600 \x00\x7f"} {
		var r mapping.Referral
		filled(t, reflect.ValueOf(&r).Elem(), text)
		rj, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		ids := []mapping.Identifier{{System: "https://fhir.nhs.uk/Id/" + text, Value: text}}
		ij, err := json.Marshal(ids)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, rj, ij)
	}
	return append(seeds, []byte(`[]`), []byte(`{}`), []byte(`null`), []byte(` {"Record":{"ID":"x","id":"y"}} `),
		[]byte(`{"Record":{"version":1.5}}`), []byte(`{"BusinessStatus":"\ud800"}`))
}

// sameDecoding fails t unless decodeStored decodes data into a new T exactly as encoding/json does, for
// every input encoding/json accepts.
func sameDecoding[T any](t *testing.T, data []byte) {
	t.Helper()
	var want, got T
	if err := json.Unmarshal(data, &want); err != nil {
		return
	}
	if err := decodeStored(data, &got); err != nil {
		t.Fatalf("decodeStored(%q) into %T: %v; encoding/json accepts it", data, got, err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("decodeStored(%q) into %T differs from encoding/json (-want +got):\n%s", data, got, diff)
	}
}

// TestDecodeStoredReadsWhatTheStoreWrote: every field of a referral and its identifiers comes back from
// decodeStored as it went in, and as encoding/json reads it.
func TestDecodeStoredReadsWhatTheStoreWrote(t *testing.T) {
	t.Parallel()
	var r mapping.Referral
	filled(t, reflect.ValueOf(&r).Elem(), "<b>\"Peggy\" & co</b>\u2028 é \U0001F600")
	rj, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var back mapping.Referral
	if err := decodeStored(rj, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("referral after a round trip (-in +out):\n%s", diff)
	}
	for _, seed := range storedSeeds(t) {
		sameDecoding[mapping.Referral](t, seed)
		sameDecoding[[]mapping.Identifier](t, seed)
	}
}

// FuzzDecodeStored holds decodeStored to encoding/json's result on every input encoding/json accepts, as a
// referral and as identifiers; any other input may fail but never panics.
func FuzzDecodeStored(f *testing.F) {
	for _, seed := range storedSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sameDecoding[mapping.Referral](t, data)
		sameDecoding[[]mapping.Identifier](t, data)
		var r mapping.Referral
		_ = decodeStored(data, &r) // never panics
	})
}

// BenchmarkDecodeStored decodes one referral as stored (2.1 KB, the demo's walking-group referral) with
// decodeStored and with encoding/json, side by side.
func BenchmarkDecodeStored(b *testing.B) {
	data := []byte(benchReferral)
	for _, c := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"decodeStored", decodeStored}, {"encoding-json", json.Unmarshal}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var r mapping.Referral
				if err := c.decode(data, &r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchReferral is the demo's walking-group referral as the store holds it (test data: no real person).
const benchReferral = `{"Record":{"id":"01a24d39-fb57-7c4e-97a1-ff288be12f41","service_request_id":"01a24d39-fb57-7c50-aa2b-18e1d82eec62","task_id":"01a24d39-fb57-7c53-8572-14e181ed7e1e","status":"requested","version":1,"service":{"id":"frome-walks","name":"Frome Walking for Health"},"priority":"routine","referred_at":"2025-03-03T10:15:00+00:00","created_at":"2026-12-06T21:19:35.255543Z","updated_at":"2026-12-06T21:19:35.255543Z","patient":{"nhs_number":"9999542557","first_name":"Margaret","name":"Margaret Anne Ellis","birth_date":"1951-03-14","gender":"female","phone":"07700 900123","email":"peggy.ellis@example.org","address":["12 Vallis Way","Frome","BA11 3BA"],"postcode":"BA11 3BA","language":"English (United Kingdom)"},"service_requested":[{"system":"http://snomed.info/sct","code":"871731000000106","display":"Referral to social prescribing service"},{"display":"Referral to Frome Walking for Health"},{"display":"Gentle led walks of 30 to 60 minutes; walks with a stick"}],"reasons":["Low mood since retirement","Wants to be more physically active after a fall last year"],"needs":"Would like to walk with others on weekday mornings; worried about keeping up.","notes":["Happy to be phoned; best after 10am. Her daughter sometimes answers the home phone."],"referrer":{"name":"Dr Aisha Rahman","role":"General Practitioner","organisation":"Frome Valley Medical Centre","ods_code":"A81001","phone":"01373 468000","email":"fvmc.referrals@nhs.example"},"consent":{"recorded":true,"status":"active","date":"2025-03-03T10:05:00+00:00","scope":"Agreed to share contact details and referral reasons with the community service","source":"Consent"}},"PracticeODS":"A81001","BusinessStatus":"queued","Patient":{"type":"Patient","identifier":{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9999542557"}},"Requester":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"},"display":"Frome Valley Medical Centre"},"Owner":{"type":"Organization","identifier":{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"XYZ01"},"display":"Frome Walking for Health"},"ServiceRequestStatus":"active"}`
