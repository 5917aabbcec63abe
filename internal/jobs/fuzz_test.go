package jobs

import (
	"testing"

	"github.com/roost-iot/roost/internal/errcode"
)

// FuzzDecodeSpec feeds job request bodies to the decoder: every refusal is an IoT Hub 400 error,
// and nothing panics.
func FuzzDecodeSpec(f *testing.F) {
	for _, s := range []string{
		`{"jobId":"j","type":"scheduleUpdateTwin","queryCondition":"tags.a = 'b'","startTime":"2026-03-04T10:00:00.000Z","maxExecutionTimeInSeconds":120,"updateTwin":{"etag":"*","tags":{"a":1},"properties":{"desired":{"b":2},"reported":{}}}}`,
		`{"jobId":7,"type":"scheduleDeviceMethod","queryCondition":"deviceId IN ['a','b']","cloudToDeviceMethod":{"methodName":"m","payload":null,"responseTimeoutInSeconds":30}}`,
		`{"type":"scheduleUpdateTwin","queryCondition":"*","updateTwin":{"desired":{}}}`,
		`{"type":"SCHEDULEDEVICEMETHOD","queryCondition":"NOT (x > 1)","cloudToDeviceMethod":{"methodName":"m","connectTimeoutInSeconds":301}}`,
		`[]`, `null`, `{"startTime":12}`, ``,
	} {
		f.Add("j", []byte(s))
	}
	f.Fuzz(func(t *testing.T, id string, body []byte) {
		sp, err := decodeSpec(id, body)
		if err != nil {
			if st := errcode.As(err).Code.HTTPStatus(); st != 400 {
				t.Fatalf("refusal with status %d: %v", st, err)
			}
			return
		}
		if sp.id != id || (sp.typ != TypeUpdateTwin && sp.typ != TypeDeviceMethod) {
			t.Fatalf("accepted %+v", sp)
		}
		if (sp.typ == TypeUpdateTwin) != (sp.updateTwin != nil) || (sp.typ == TypeDeviceMethod) != (sp.method != nil) {
			t.Fatalf("accepted a job without its action: %+v", sp)
		}
	})
}
