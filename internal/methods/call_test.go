package methods

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/roost-iot/roost/internal/errcode"
)

func TestMethodsDecodeCall(t *testing.T) {
	t.Parallel()
	big := `"` + strings.Repeat("x", MaxPayload-2) + `"` // exactly MaxPayload bytes of JSON
	tests := []struct {
		name    string
		body    string
		want    Call
		code    errcode.Code
		payload string
	}{
		{name: "minimal", body: `{"methodName":"reboot"}`, want: Call{MethodName: "reboot"}},
		{name: "node sdk defaults", body: `{"methodName":"m","responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0,"payload":null}`,
			want: Call{MethodName: "m", ResponseTimeout: 30 * time.Second}},
		{name: "object payload", body: `{"methodName":"m","payload":{"k1":"v1"}}`, want: Call{MethodName: "m"}, payload: `{"k1":"v1"}`},
		{name: "empty string payload", body: `{"methodName":"m","payload":""}`, want: Call{MethodName: "m"}, payload: `""`},
		{name: "payload kept byte for byte", body: `{"methodName":"m","payload": { "a" : [1, 2.50] } }`, want: Call{MethodName: "m"}, payload: `{ "a" : [1, 2.50] }`},
		{name: "payload at the limit", body: `{"methodName":"m","payload":` + big + `}`, want: Call{MethodName: "m"}, payload: big},
		{name: "timeouts at their bounds", body: `{"methodName":"m","responseTimeoutInSeconds":300,"connectTimeoutInSeconds":300}`,
			want: Call{MethodName: "m", ResponseTimeout: 300 * time.Second, ConnectTimeout: 300 * time.Second}},
		{name: "response timeout 5", body: `{"methodName":"m","responseTimeoutInSeconds":5}`, want: Call{MethodName: "m", ResponseTimeout: 5 * time.Second}},
		{name: "null timeouts mean defaults", body: `{"methodName":"m","responseTimeoutInSeconds":null,"connectTimeoutInSeconds":null}`, want: Call{MethodName: "m"}},
		{name: "whole float", body: `{"methodName":"m","responseTimeoutInSeconds":10.0}`, want: Call{MethodName: "m", ResponseTimeout: 10 * time.Second}},
		{name: "field names in any case", body: `{"MethodName":"m","ResponseTimeoutInSeconds":7}`, want: Call{MethodName: "m", ResponseTimeout: 7 * time.Second}},
		{name: "allowed punctuation", body: `{"methodName":"a-b_c.d*e!f~g+h#i%j&k'l^m|n` + "`" + `"}`, want: Call{MethodName: "a-b_c.d*e!f~g+h#i%j&k'l^m|n`"}},

		{name: "empty body", body: ``, code: errcode.ArgumentNull},
		{name: "blank body", body: " \n", code: errcode.ArgumentNull},
		{name: "malformed json", body: `{"methodName":`, code: errcode.IotHubFormatError},
		{name: "trailing garbage", body: `{"methodName":"m"} x`, code: errcode.IotHubFormatError},
		{name: "array body", body: `[1,2]`, code: errcode.IotHubFormatError},
		{name: "string body", body: `"m"`, code: errcode.IotHubFormatError},
		{name: "null body", body: `null`, code: errcode.ArgumentNull},
		{name: "no method name", body: `{"payload":1}`, code: errcode.ArgumentNull},
		{name: "empty method name", body: `{"methodName":""}`, code: errcode.ArgumentNull},
		{name: "method name not a string", body: `{"methodName":5}`, code: errcode.ArgumentInvalid},
		{name: "space in name", body: `{"methodName":"a b"}`, code: errcode.ArgumentInvalid},
		{name: "slash in name", body: `{"methodName":"a/b"}`, code: errcode.ArgumentInvalid},
		{name: "dollar in name", body: `{"methodName":"$m"}`, code: errcode.ArgumentInvalid},
		{name: "question mark in name", body: `{"methodName":"a?b"}`, code: errcode.ArgumentInvalid},
		{name: "braces in name", body: `{"methodName":"{m}"}`, code: errcode.ArgumentInvalid},
		{name: "control character in name", body: `{"methodName":"a\u0000b"}`, code: errcode.ArgumentInvalid},
		{name: "non-ascii name", body: `{"methodName":"grüße"}`, code: errcode.ArgumentInvalid},
		{name: "name too long", body: `{"methodName":"` + strings.Repeat("m", MaxNameLength+1) + `"}`, code: errcode.ArgumentInvalid},
		{name: "payload over the limit", body: `{"methodName":"m","payload":"` + strings.Repeat("x", MaxPayload) + `"}`, code: errcode.ArgumentInvalid},
		{name: "response timeout 4", body: `{"methodName":"m","responseTimeoutInSeconds":4}`, code: errcode.ArgumentInvalid},
		{name: "response timeout 0", body: `{"methodName":"m","responseTimeoutInSeconds":0}`, code: errcode.ArgumentInvalid},
		{name: "response timeout 301", body: `{"methodName":"m","responseTimeoutInSeconds":301}`, code: errcode.ArgumentInvalid},
		{name: "response timeout negative", body: `{"methodName":"m","responseTimeoutInSeconds":-5}`, code: errcode.ArgumentInvalid},
		{name: "response timeout fraction", body: `{"methodName":"m","responseTimeoutInSeconds":5.5}`, code: errcode.ArgumentInvalid},
		{name: "response timeout string", body: `{"methodName":"m","responseTimeoutInSeconds":"30"}`, code: errcode.ArgumentInvalid},
		{name: "response timeout huge", body: `{"methodName":"m","responseTimeoutInSeconds":1e300}`, code: errcode.ArgumentInvalid},
		{name: "connect timeout 301", body: `{"methodName":"m","connectTimeoutInSeconds":301}`, code: errcode.ArgumentInvalid},
		{name: "connect timeout negative", body: `{"methodName":"m","connectTimeoutInSeconds":-1}`, code: errcode.ArgumentInvalid},
		{name: "connect timeout bool", body: `{"methodName":"m","connectTimeoutInSeconds":true}`, code: errcode.ArgumentInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeCall([]byte(tt.body))
			if tt.code != 0 {
				var e *errcode.Error
				if !errors.As(err, &e) || e.Code != tt.code {
					t.Fatalf("got %v, want code %d", err, tt.code)
				}
				if e.Msg == "" || len(e.Msg) > 400 {
					t.Fatalf("message %q: want a short explanation", e.Msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("got %v, want success", err)
			}
			if string(got.Payload) != tt.payload {
				t.Fatalf("payload %.80q, want %.80q", got.Payload, tt.payload)
			}
			if got.DeviceID != tt.want.DeviceID || got.ModuleID != tt.want.ModuleID || got.MethodName != tt.want.MethodName ||
				got.ResponseTimeout != tt.want.ResponseTimeout || got.ConnectTimeout != tt.want.ConnectTimeout {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMethodsCallCheck(t *testing.T) {
	t.Parallel()
	ok := Call{DeviceID: "d", MethodName: "m"}
	if err := ok.Check(); err != nil {
		t.Fatal(err)
	}
	if got := ok.responseTimeout(); got != DefaultResponseTimeout {
		t.Fatalf("default response timeout %s", got)
	}
	for _, c := range []Call{
		{MethodName: "m", ResponseTimeout: time.Second},
		{MethodName: "m", ConnectTimeout: -time.Second},
		{MethodName: "m", Payload: []byte("{nope")},
		{MethodName: "m", Payload: bytes.Repeat([]byte("1"), MaxPayload+1)},
		{MethodName: "a=b"},
	} {
		if err := c.Check(); !errcode.Is(err, errcode.ArgumentInvalid) {
			t.Errorf("%+.60v: got %v, want 400004", c, err)
		}
	}
}

// FuzzMethodsDecodeCall feeds arbitrary bodies to the service API's parser: it must never panic,
// and every call it accepts must pass Check and keep its payload as valid JSON.
func FuzzMethodsDecodeCall(f *testing.F) {
	for _, s := range []string{
		`{"methodName":"reboot","payload":{"k1":"v1"},"responseTimeoutInSeconds":30,"connectTimeoutInSeconds":0}`,
		`{"methodName":"m","payload":null}`, `{"methodName":"m","payload":""}`, `[]`, `null`, ``, `{"methodName":5}`,
		`{"methodName":"m","responseTimeoutInSeconds":-0.0}`, `{"methodName":"m","connectTimeoutInSeconds":1e-9}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeCall(body)
		if err != nil {
			var e *errcode.Error
			if !errors.As(err, &e) || e.Code.HTTPStatus() != 400 {
				t.Fatalf("error %v is not a 400 errcode.Error", err)
			}
			return
		}
		if err := c.Check(); err != nil {
			t.Fatalf("accepted a call that fails Check: %v", err)
		}
		if len(c.Payload) > 0 && !jsonValid(c.Payload) {
			t.Fatalf("accepted payload %q is not JSON", c.Payload)
		}
	})
}
