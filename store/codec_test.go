package store

import (
	"encoding/binary"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func codecRun() *Run {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	return &Run{
		Partner: "acme", Site: "retail", Endpoint: "encompass",
		Saga: "encompass-milestone", SagaVersion: "7", Mode: "async", Status: StatusRunning,
		ReceivedAt: now, UpdatedAt: now.Add(time.Second), WakeAt: now.Add(time.Minute), Attempt: 1,
		IdempotencyKey: "acme/retail/encompass/evt-8f14e45f", DebounceKey: "acme/retail/encompass/encompass-milestone/12345",
		MessageKey:   "message-id:acme/retail/encompass/msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
		TraceParent:  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		SupersededBy: "019b7ca9-9070-7183-a505-37589cc57c18",
		RetryOf:      "019b7ca9-9070-7183-a505-37589cc57c17", CancelRequested: true,
		Request: Request{
			Method: "POST", Path: "/pushback/acme/retail/encompass",
			Headers: map[string][]string{
				"Content-Type": {"application/json"}, "User-Agent": {"Encompass-Webhooks/1.0"},
				"X-Elli-Signature": {"<redacted>"}, "X-Request-Id": {"7d0f6f2c-0e1b-4bb6-9a43-6b1f0e0c1a55"},
			},
			RemoteIP: "203.0.113.9", ContentType: "application/json",
			Body: []byte(`{"eventId":"8f14e45f","eventType":"milestone","eventTime":"2026-01-02T03:04:05Z","meta":{"resourceId":"12345","resourceType":"loan","instanceId":"BE11111111"}}`),
		},
		Answer: &Answer{Status: 200, Body: []byte(`{"status":"OK","code":200,"message":"accepted","run_id":"019b7ca9-9070-7183-a505-37589cc57c17"}`)},
		State:  []byte(`{"next":"crm_task","steps":{"fetch_loan":{"status":"succeeded","attempts":1,"output":{"status":200,"body":{"milestone":"Started"}}}}}`),
		Result: []byte(`{"steps":[]}`),
		Error:  "crm_task: 503",
	}
}

func TestCodecRoundTrip(t *testing.T) {
	in := codecRun()
	rec := EncodeRun(nil, in, in.Request.Body)
	var out Run
	body, err := DecodeRun(rec, &out, true)
	if err != nil {
		t.Fatal(err)
	}
	out.Request.Body = body
	if !reflect.DeepEqual(&out, in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, *in)
	}
	var light Run
	if _, err := DecodeRun(rec, &light, false); err != nil {
		t.Fatal(err)
	}
	if light.State != nil || light.Result != nil || light.Partner != "acme" || light.Answer == nil {
		t.Fatalf("light decode: %+v", light)
	}
	for cut := 0; cut < len(rec); cut++ {
		var r Run
		if _, err := DecodeRun(rec[:cut], &r, true); err == nil {
			t.Fatalf("a record cut at %d of %d decoded without error", cut, len(rec))
		}
	}
}

// Fields appended after version 1 shipped (MessageKey, TraceParent, SupersededBy, RetryOf,
// then the CancelRequested byte) are absent from older records, whose light part ends
// before them; such records still decode, with the missing fields empty.
func TestCodecReadsRecordsWrittenBeforeLaterFields(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dropped int // trailing zero bytes (the cancel byte, then empty strings) an older writer did not write
	}{
		{"a record written before cancel requests reads with none", 1},
		{"a record written before retry_of reads with neither", 2},
		{"a record written before superseded_by reads with none of the three", 3},
		{"a record written before trace parents reads with none of the four", 4},
		{"a record written before message keys reads with none of the five", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := codecRun()
			in.CancelRequested = false
			later := in.laterFields()
			for _, f := range later[len(later)-(tc.dropped-1):] {
				*f = ""
			}
			rec := EncodeRun(nil, in, in.Request.Body)
			n, k := binary.Uvarint(rec[1:])
			light := rec[1+k : 1+k+int(n)]
			for i := 1; i <= tc.dropped; i++ {
				if light[len(light)-i] != 0 {
					t.Fatalf("the light part does not end in %d zero bytes", tc.dropped)
				}
			}
			cut := uint64(tc.dropped)
			old := append([]byte{codecVersion}, binary.AppendUvarint(nil, n-cut)...)
			old = append(old, light[:len(light)-tc.dropped]...)
			old = append(old, rec[1+k+int(n):]...)
			var out Run
			body, err := DecodeRun(old, &out, true)
			if err != nil {
				t.Fatal(err)
			}
			out.Request.Body = body
			if !reflect.DeepEqual(&out, in) {
				t.Fatalf("old record:\n got %+v\nwant %+v", out, *in)
			}
		})
	}
}

func FuzzDecodeRun(f *testing.F) {
	in := codecRun()
	f.Add(EncodeRun(nil, in, in.Request.Body))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		var r Run
		_, _ = DecodeRun(rec, &r, true) // must not panic
	})
}

// BenchmarkEncodeRun compares the record codec with encoding/json, which it was chosen
// over. Sizes are reported as B/record.
func BenchmarkEncodeRun(b *testing.B) {
	in := codecRun()
	rec := EncodeRun(nil, in, in.Request.Body)
	js, _ := json.Marshal(in)
	b.Run("binary/encode", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 2048)
		for b.Loop() {
			buf = EncodeRun(buf[:0], in, in.Request.Body)
		}
		b.ReportMetric(float64(len(rec)), "B/record")
	})
	b.Run("binary/decode-full", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r Run
			if _, err := DecodeRun(rec, &r, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary/decode-light", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r Run
			if _, err := DecodeRun(rec, &r, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json/encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(in); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(js)), "B/record")
	})
	b.Run("json/decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r Run
			if err := json.Unmarshal(js, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
